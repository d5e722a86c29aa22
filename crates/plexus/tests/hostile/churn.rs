//! Connections coming and going: 1,000 opened and closed in a loop, and a client process killed
//! in the middle of its frames. Bound: 32 MiB.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use bytes::BytesMut;

use super::*;
use crate::support::process::kill_and_reap;

/// Waits (up to [`WAIT`]) until `plexus.stats` shows only the well-behaved peers: their two
/// connections, the echo worker's one name, no subscription and no pending call. Whatever the
/// closed connections held must be gone.
async fn nothing_left_behind(bus: &Bus, after: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = bus.stats().await;
        let left = (
            stats["connections"].as_u64(),
            stats["names"].as_u64(),
            stats["subscriptions"].as_u64(),
            stats["pending_calls"].as_u64(),
        );
        if left == (Some(2), Some(1), Some(0), Some(0)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after {after}: connections, names, subscriptions and pending calls are still {left:?}, not (2, 1, 0, 0)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 1,000 connections opened and closed one after the other, in five ways: after a `hello`; with
/// nothing sent; with half a `hello`; after NDJSON requests (unread answers); after registering,
/// subscribing, calling and publishing without reading anything. Afterwards the broker holds
/// nothing of theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_connections_opened_and_closed() {
    let bus = Bus::start(&[]).await;
    let hello = Frame::hello("churn").to_bytes();
    for i in 0..1000u64 {
        match i % 5 {
            0 => drop(Conn::hello(bus.socket(), "churn").await),
            1 => drop(Conn::connect(bus.socket()).await),
            2 => {
                let mut c = Conn::connect(bus.socket()).await;
                c.send_bytes(&hello[..10]).await;
            }
            3 => {
                let mut c = Conn::connect(bus.socket()).await;
                let lines = format!(
                    "{{\"op\":\"ping\",\"id\":1}}\n{{\"op\":\"register\",\"id\":2,\"name\":\"churn.nd{i}\"}}\n{{\"op\":\"subscribe\",\"id\":3,\"pattern\":\"churn.>\"}}\n"
                );
                c.send_bytes(lines.as_bytes()).await;
            }
            _ => {
                let mut c = Conn::hello(bus.socket(), "churn").await;
                let mut bytes = Vec::new();
                for f in [
                    Frame::register(1, &format!("churn.n{i}"), false),
                    Frame::subscribe(2, "churn.>"),
                    Frame::call(3, ECHO, "echo", 0, b"1"),
                    Frame::publish(0, "churn.x", b"1", false),
                ] {
                    bytes.extend_from_slice(&f.to_bytes());
                }
                c.send_bytes(&bytes).await;
            }
        }
    }
    nothing_left_behind(&bus, "1,000 connections opened and closed").await;
    bus.holds("1,000 connections opened and closed", 32).await;
}

/// Set (to the broker's socket) in the environment of this test binary run again as the
/// client that gets killed.
const CHILD_ENV: &str = "PLEXUS_HOSTILE_MIDFRAME_SOCKET";
/// What the child prints before each of its lines on stdout.
const CHILD_MARK: &str = "midframe-child:";
/// The name the doomed worker holds.
const DOOMED: &str = "midframe.worker";

/// Reads one native frame from a blocking socket.
fn read_frame(stream: &mut std::os::unix::net::UnixStream, buf: &mut BytesMut) -> Frame {
    loop {
        if let Some(f) = plexus_proto::decode(buf, u32::MAX).expect("valid frame") {
            return f;
        }
        let mut chunk = [0u8; 65_536];
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "the broker closed the child's connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The child: a worker that registers [`DOOMED`], takes a call and sends half of its reply; a
/// caller that sends half of a 1 MiB call; an NDJSON peer that sends half a line. Then it waits
/// to be killed.
fn doomed_client(socket: &str) {
    use std::os::unix::net::UnixStream;
    let say = |line: &str| {
        println!("{CHILD_MARK} {line}");
        std::io::stdout().flush().expect("flush");
    };
    let mut buf = BytesMut::new();
    let mut worker = UnixStream::connect(socket).expect("connect");
    worker
        .write_all(&Frame::hello("doomed-worker").to_bytes())
        .expect("hello");
    assert_eq!(read_frame(&mut worker, &mut buf).kind(), Kind::Welcome);
    worker
        .write_all(&Frame::register(1, DOOMED, false).to_bytes())
        .expect("register");
    assert_eq!(read_frame(&mut worker, &mut buf).kind(), Kind::Reply);
    say("registered");
    let call = read_frame(&mut worker, &mut buf);
    assert_eq!(call.kind(), Kind::Call);
    let reply = Frame::reply(call.id(), &vec![b'r'; 100_000]).to_bytes();
    worker
        .write_all(&reply[..reply.len() / 2])
        .expect("half a reply");

    let mut caller = UnixStream::connect(socket).expect("connect");
    let mut buf = BytesMut::new();
    caller
        .write_all(&Frame::hello("doomed-caller").to_bytes())
        .expect("hello");
    assert_eq!(read_frame(&mut caller, &mut buf).kind(), Kind::Welcome);
    let call = Frame::call(1, ECHO, "echo", 0, &vec![b'1'; 1 << 20]).to_bytes();
    caller
        .write_all(&call[..call.len() / 2])
        .expect("half a call");

    let mut nd = UnixStream::connect(socket).expect("connect");
    nd.write_all(b"{\"op\":\"ping\",\"id\":1,\"da")
        .expect("half a line");
    say("ready");
    std::thread::sleep(Duration::from_secs(60));
}

/// Kills its child process when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        kill_and_reap(&mut self.0);
    }
}

/// A client process is killed (SIGKILL) while its worker connection is halfway through a reply,
/// its caller connection halfway through a 1 MiB call and its NDJSON connection halfway through
/// a line. The call it was answering is answered `worker_gone`, its name is free again, and the
/// broker holds nothing of it. The client is this test binary run again (as [`doomed_client`]).
#[test]
fn client_killed_mid_frame() {
    if let Ok(socket) = std::env::var(CHILD_ENV) {
        doomed_client(&socket);
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(killed_mid_frame());
}

async fn killed_mid_frame() {
    let bus = Bus::start(&[]).await;
    let child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "churn::client_killed_mid_frame",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, bus.socket())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the doomed client");
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let (marks, heard) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest may have written "test NAME ... " on the same line first.
            if let Some((_, mark)) = line.split_once(CHILD_MARK) {
                let _ = marks.send(mark.trim().to_owned());
            }
        }
    });
    let expect = |what: &str| {
        let got = heard
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("the doomed client did not say {what:?} in time: {e}"));
        assert_eq!(got, what);
    };
    expect("registered");
    let mut caller = Conn::hello(bus.socket(), "midframe-caller").await;
    caller
        .send(&Frame::call(1, DOOMED, "m", 30_000, b"\"x\""))
        .await;
    expect("ready");
    bus.holds("a client stopped in the middle of three frames", 32)
        .await;

    kill_and_reap(&mut child.0);
    let answer = answer_within(&bus, &mut caller, PROMPT, "the call to the killed worker").await;
    assert_eq!(answer.id(), 1, "{answer:?}");
    assert_eq!(
        error_code(&answer),
        ErrorCode::WorkerGone,
        "{}",
        answer.string(0)
    );
    name_becomes_free(&bus, DOOMED, "the worker was killed mid-frame").await;
    drop(caller);
    nothing_left_behind(&bus, "a client killed mid-frame").await;
    bus.holds("a client killed mid-frame", 32).await;
}
