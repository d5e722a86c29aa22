//! What a real broker process holds for clients that do not read or that sent a large frame,
//! measured as its resident memory (VmRSS).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use plexus_proto::{Frame, Kind, decode};

mod cli_support;

const WAIT: Duration = Duration::from_secs(30);
const MIB: u64 = 1024 * 1024;

/// A broker process on a socket in a temporary directory, killed when dropped.
struct Broker {
    child: Child,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start(args: &[&str]) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("bus.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_plexus"))
            .arg("broker")
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn broker");
        cli_support::wait_listening(&socket, WAIT, "broker listens in time");
        Broker {
            child,
            socket,
            _dir: dir,
        }
    }

    /// A client subscribed to `topic` that never reads, and a publisher the broker has welcomed.
    fn subscriber_and_publisher(&self, topic: &str) -> (Client, Client) {
        let mut subscriber = self.client("subscriber");
        assert_eq!(
            subscriber.request(&Frame::subscribe(1, topic)).kind(),
            Kind::Reply
        );
        let mut publisher = self.client("publisher");
        assert_eq!(publisher.request(&Frame::ping(1, b"")).kind(), Kind::Pong);
        (subscriber, publisher)
    }

    /// Resident memory of the broker process, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status");
        kib * 1024
    }

    fn client(&self, name: &str) -> Client {
        Client::hello(&self.socket, name)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking raw-frame client.
struct Client {
    stream: UnixStream,
    buf: BytesMut,
}

impl Client {
    fn hello(path: &Path, name: &str) -> Client {
        let stream = UnixStream::connect(path).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut c = Client {
            stream,
            buf: BytesMut::new(),
        };
        c.send(&Frame::hello(name));
        assert_eq!(c.recv().kind(), Kind::Welcome);
        c
    }

    fn send(&mut self, frame: &Frame) {
        self.stream.write_all(&frame.to_bytes()).expect("write");
    }

    fn recv(&mut self) -> Frame {
        loop {
            if let Some(f) = decode(&mut self.buf, u32::MAX).expect("valid frame") {
                return f;
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).expect("read in time");
            assert!(n > 0, "broker closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends `frame` and waits for its answer, which must come next.
    fn request(&mut self, frame: &Frame) -> Frame {
        self.send(frame);
        let answer = self.recv();
        assert_eq!(answer.id(), frame.id(), "{answer:?}");
        answer
    }
}

#[test]
fn small_events_queued_for_a_subscriber_that_does_not_read_hold_their_own_bytes_not_read_buffers() {
    let broker = Broker::start(&[]);
    let (_subscriber, mut publisher) = broker.subscriber_and_publisher("t");
    let before = broker.rss();
    // One event per read of the broker: each waits for its acknowledgement.
    for id in 1..=20_000 {
        let ack = publisher.request(&Frame::publish(id, "t", b"x", true));
        assert_eq!(ack.kind(), Kind::Reply, "{ack:?}");
    }
    let grown = broker.rss().saturating_sub(before);
    assert!(
        grown < 16 * MIB,
        "the broker grew by {} MiB holding 20,000 one-byte events for a subscriber that does not read",
        grown / MIB
    );
}

#[test]
fn a_full_outbox_of_one_byte_events_holds_about_its_limit() {
    let broker = Broker::start(&["--outbox-limit", "8388608", "--max-frame", "8388608"]);
    let (_subscriber, mut publisher) = broker.subscriber_and_publisher("t");
    let before = broker.rss();
    for id in 1..=300_000 {
        publisher.send(&Frame::publish(id, "t", b"x", false));
    }
    let last = publisher.request(&Frame::publish(300_001, "t", b"x", true));
    assert_eq!(last.kind(), Kind::Reply, "{last:?}");
    let grown = broker.rss().saturating_sub(before);
    assert!(
        grown < 24 * MIB,
        "the broker grew by {} MiB holding an 8 MiB outbox of one-byte events",
        grown / MIB
    );
}

#[test]
fn idle_connections_do_not_keep_the_buffers_their_large_frames_needed() {
    const CONNECTIONS: usize = 32;
    let broker = Broker::start(&[]);
    let payload = vec![7u8; 4 * 1024 * 1024];
    let mut clients: Vec<Client> = (0..CONNECTIONS)
        .map(|i| broker.client(&format!("big-{i}")))
        .collect();
    let before = broker.rss();
    for client in &mut clients {
        let ack = client.request(&Frame::publish(1, "nobody.listens", &payload, true));
        assert_eq!(ack.kind(), Kind::Reply, "{ack:?}");
        assert_eq!(client.request(&Frame::ping(2, b"")).kind(), Kind::Pong);
    }
    let grown = broker.rss().saturating_sub(before);
    assert!(
        grown < 32 * MIB,
        "the broker grew by {} MiB after {CONNECTIONS} connections each sent one 4 MiB frame and went idle",
        grown / MIB
    );
}
