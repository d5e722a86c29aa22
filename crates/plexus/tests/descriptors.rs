//! A broker out of file descriptors: its accept loops (the bus sockets and metrics) back off
//! instead of spinning on the failing accept.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use plexus_proto::Frame;

mod cli_support;

const WAIT: Duration = Duration::from_secs(10);
/// The broker's descriptor limit: a few for itself, the rest for connections.
const FD_LIMIT: usize = 64;

/// CPU time (user + system, in clock ticks) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the command name (which ends with the last ')'): utime and stime are the
    // 12th and 13th of them.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .expect("stat format");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| fields[i].parse::<u64>().expect("a number");
    tick(11) + tick(12)
}

#[test]
fn out_of_descriptors_the_accept_loops_back_off_instead_of_spinning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("bus.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut broker = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {FD_LIMIT} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_plexus"))
        .args(["broker", "--socket"])
        .arg(&socket)
        .args(["--metrics", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn broker");
    cli_support::wait_listening(&socket, WAIT, "the broker listens in time");
    // More connections than the broker has descriptors: the last ones wait in the backlog,
    // and every accept fails.
    let hello = Frame::hello("filler").to_bytes();
    let mut held = Vec::new();
    for _ in 0..FD_LIMIT + 8 {
        let mut c = UnixStream::connect(&socket).expect("connect");
        c.write_all(&hello).expect("hello");
        held.push(c);
    }
    let _waiting = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect metrics");
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(broker.id());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(broker.id()) - before;
    let _ = broker.kill();
    let _ = broker.wait();
    assert!(
        used < 100,
        "the broker used {used} ticks (1/100 s) of CPU in 2 s while out of descriptors"
    );
}
