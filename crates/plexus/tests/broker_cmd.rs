//! `plexus broker` as a process: starts, refuses a second instance, stops cleanly on SIGTERM.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plexus_proto::{Frame, Kind};

fn start(socket: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["broker", "--socket"])
        .arg(socket)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plexus broker")
}

fn wait_for_socket(socket: &Path) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = UnixStream::connect(socket) {
            return s;
        }
        assert!(Instant::now() < deadline, "broker did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn broker_serves_refuses_a_second_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("bus.sock");
    let mut broker = start(&socket);
    let mut stream = wait_for_socket(&socket);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(&Frame::hello("cli-test").to_bytes())
        .expect("hello");
    let mut head = [0u8; plexus_proto::HEADER_LEN];
    stream.read_exact(&mut head).expect("welcome");
    let header = plexus_proto::Header::decode(&head).expect("valid header");
    assert_eq!(header.kind, Kind::Welcome);

    let mut second = start(&socket);
    let status = wait_exit(&mut second);
    assert_eq!(status.code(), Some(3));
    let mut err = String::new();
    second
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    assert!(err.contains("already listening"), "{err}");

    rustix::process::kill_process(
        rustix::process::Pid::from_child(&broker),
        rustix::process::Signal::TERM,
    )
    .expect("send SIGTERM");
    let status = wait_exit(&mut broker);
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
    assert!(!socket.exists(), "socket removed on shutdown");
}
