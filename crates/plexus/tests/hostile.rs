//! Hostile clients against the real `plexus broker` process (issue 11, "Proving it").
//!
//! Every test starts its own broker process, a well-behaved `plexus echo` worker process and a
//! well-behaved Rust client, then attacks the broker over its real socket. After each hostile
//! act, [`Bus::holds`] checks that the broker process is alive and logged no panic, that its peak
//! resident memory grew less than the bound documented at the act, and that the well-behaved
//! client (connected before the act) and a client connecting now each get an echo call answered
//! within 5 s. `docs/security-tests.md` says what each test proves.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use plexus_proto::{ErrorCode, Frame, Kind};
use serde_json::Value;
use support::bus::{Bus, ECHO};
use support::raw::{Conn, Next, clip, error_code, header, ipc_packet, member, pb_packet, wire};
use support::{PROMPT, RSS_CEILING_MIB, Rng, WAIT, deep_json};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

/// Depths of the nested-array JSON sent through the bus: 100,000 levels (200 KB), and 2,000
/// levels (4 KB), small enough for the monitor feed to show it instead of `null`.
const DEPTHS: [usize; 2] = [100_000, 2_000];

/// A task reading (and throwing away) everything a connection receives; stopped when dropped.
struct Drain(JoinHandle<()>);

impl Drain {
    fn start(mut conn: Conn) -> Drain {
        Drain(tokio::spawn(async move {
            while let Next::Got(_) = conn.next_frame(Duration::from_secs(3600)).await {}
        }))
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A native connection subscribed to the broker's monitor feed, reading it all the time.
async fn monitor(bus: &Bus) -> Drain {
    let mut m = Conn::hello(bus.socket(), "monitor").await;
    m.subscribe(1, "plexus.monitor.>").await;
    Drain::start(m)
}

/// Waits (up to [`WAIT`]) until a new connection can register `name` exclusively: a name whose
/// owner disconnected must become free, not stay registered to a dead connection.
async fn name_becomes_free(bus: &Bus, name: &str, after: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut c = Conn::hello(bus.socket(), "claimant").await;
        let r = c.request(&Frame::register(1, name, false)).await;
        if r.kind() == Kind::Reply {
            return;
        }
        assert_eq!(
            error_code(&r),
            ErrorCode::NameTaken,
            "after {after}: {r:?}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "after {after}: '{name}' is still registered {WAIT:?} after its owner disconnected: {}",
            r.string(0)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next frame on `conn`, events skipped, failing with `what` if the broker sends nothing.
async fn answer_to(conn: &mut Conn, what: &str) -> Frame {
    loop {
        match conn.next_frame(WAIT).await {
            Next::Got(f) if f.kind() == Kind::Event => continue,
            Next::Got(f) => return f,
            Next::Closed => panic!("{what}: the broker closed the connection without an answer"),
            Next::TimedOut => panic!("{what}: no answer within {WAIT:?}"),
        }
    }
}

/// The next NDJSON line on `conn`, failing with `what` if none comes.
async fn line_to(conn: &mut Conn, what: &str) -> String {
    match conn.next_line(WAIT).await {
        Next::Got(l) => l,
        Next::Closed => panic!("{what}: the broker closed the NDJSON connection without an answer"),
        Next::TimedOut => panic!("{what}: no NDJSON line within {WAIT:?}"),
    }
}

/// Fails unless `conn` is closed by the broker within [`WAIT`].
async fn assert_closed(conn: &mut Conn, what: &str) {
    assert!(
        conn.closed_within(WAIT).await,
        "{what}: the broker kept the connection open"
    );
}

// ---------------------------------------------------------------------------------------------
// Garbage and impossible sizes
// ---------------------------------------------------------------------------------------------

/// Random bytes as a connection's first bytes, after a native `hello`, and inside each
/// dialect's framing. Bound: 32 MiB (nothing here needs more than one read buffer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_garbage_bytes() {
    let bus = Bus::start(&[]).await;
    let mut rng = Rng::new(11);
    // As the first bytes: whatever dialect the first bytes pick, the broker must survive them.
    for len in [1usize, 2, 5, 24, 100, 4096, 65_536, 1 << 20] {
        for _ in 0..4 {
            let mut c = Conn::connect(bus.socket()).await;
            c.try_send_bytes(&rng.bytes(len)).await;
        }
    }
    bus.holds("random bytes as the first bytes of 32 connections", 32)
        .await;

    // After a valid hello: not a frame, so bad_frame and the connection is closed.
    for len in [24usize, 1000, 65_536] {
        let mut c = Conn::hello(bus.socket(), "garbage").await;
        let mut bytes = rng.bytes(len);
        bytes[0] = b'Q'; // never the magic
        c.send_bytes(&bytes).await;
        let f = answer_to(&mut c, "garbage after hello").await;
        assert_eq!(error_code(&f), ErrorCode::BadFrame, "{}", f.string(0));
        assert_closed(&mut c, "garbage after hello").await;
    }

    // NDJSON: garbage lines are answered bad_frame one by one and the connection goes on.
    let mut nd = Conn::connect(bus.socket()).await;
    nd.send_bytes(b"{\"op\":\"ping\",\"id\":1}\n").await;
    let pong = line_to(&mut nd, "NDJSON ping").await;
    assert!(pong.contains("\"pong\""), "{pong}");
    let mut garbage = rng.bytes(65_536);
    garbage.push(b'\n');
    nd.send_bytes(&garbage).await;
    nd.send_bytes(b"{\"op\":\"ping\",\"id\":2}\n").await;
    loop {
        let line = line_to(&mut nd, "NDJSON ping after garbage lines").await;
        if line.contains("\"pong\"") {
            assert_eq!(member(&line, "id"), "2", "{line}");
            break;
        }
        assert!(line.contains("bad_frame"), "a garbage line is answered bad_frame: {line}");
    }

    // ProcBridge: a request whose body is garbage gets an error response; the next one works.
    let mut pb = Conn::connect(bus.socket()).await;
    pb.send_bytes(&pb_packet(0, &rng.bytes(5000))).await;
    let (status, body) = pb.pb().await;
    assert_eq!(status, 2, "garbage body answered with an error response: {body}");
    let request = format!("{{\"method\":\"{ECHO}.echo\",\"payload\":\"after-garbage\"}}");
    pb.send_bytes(&pb_packet(0, request.as_bytes())).await;
    let (status, body) = pb.pb().await;
    assert_eq!((status, member(&body, "payload").as_str()), (1, "\"after-garbage\""));

    // ipc-broker: a packet whose body is garbage is dropped; the next request is answered.
    let mut ipc = Conn::connect(bus.socket()).await;
    let mut body = b"{".to_vec();
    body.extend(rng.bytes(5000));
    ipc.send_bytes(&ipc_packet(&body)).await;
    let has = format!("{{\"HasObject\":{{\"object_name\":\"{ECHO}\"}}}}");
    ipc.send_bytes(&ipc_packet(has.as_bytes())).await;
    let answer = ipc.ipc().await;
    assert!(answer.contains("\"exists\":true"), "{answer}");

    bus.holds("random bytes in every dialect", 32).await;
}

/// A header declaring a 4 GiB body (u32::MAX bytes), in every framing that has a length: the
/// broker refuses it as soon as the header is in, without allocating for the body, and closes
/// the connection. An NDJSON line longer than the frame limit is skipped without being
/// buffered. Bound: 32 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_declaring_a_4_gib_body() {
    let bus = Bus::start(&[]).await;
    for _ in 0..20 {
        // As the first frame.
        let mut c = Conn::connect(bus.socket()).await;
        c.send_bytes(&header(0x01, 0, 1, u32::MAX, 0, 0)).await;
        c.try_send_bytes(&[0u8; 4096]).await;
        let f = answer_to(&mut c, "4 GiB hello").await;
        assert_eq!(error_code(&f), ErrorCode::FrameTooLarge, "{}", f.string(0));
        assert_closed(&mut c, "4 GiB hello").await;
        // After the handshake.
        let mut c = Conn::hello(bus.socket(), "huge-header").await;
        c.send_bytes(&header(0x12, 0, 2, u32::MAX, 0, 7)).await;
        c.try_send_bytes(&[b'x'; 4096]).await;
        let f = answer_to(&mut c, "4 GiB call").await;
        assert_eq!(error_code(&f), ErrorCode::FrameTooLarge, "{}", f.string(0));
        assert_closed(&mut c, "4 GiB call").await;
    }
    bus.holds("native headers declaring 4 GiB bodies", 32).await;

    // ProcBridge: body length u32::MAX.
    let mut pb = Conn::connect(bus.socket()).await;
    let mut packet = b"pb\x01\x01\x00\x00\x00".to_vec();
    packet.extend_from_slice(&u32::MAX.to_le_bytes());
    packet.extend_from_slice(&[b'{'; 4096]);
    pb.try_send_bytes(&packet).await;
    let (status, body) = pb.pb().await;
    assert_eq!(status, 2, "{body}");
    assert!(body.contains("frame_too_large"), "{body}");
    assert_closed(&mut pb, "4 GiB ProcBridge packet").await;

    // ipc-broker: length 0xFFFFFFFF, then a `{`.
    let mut ipc = Conn::connect(bus.socket()).await;
    let mut packet = u32::MAX.to_be_bytes().to_vec();
    packet.extend_from_slice(&[b'{'; 4096]);
    ipc.try_send_bytes(&packet).await;
    assert_closed(&mut ipc, "4 GiB ipc-broker packet").await;
    bus.holds("dialect packets declaring 4 GiB bodies", 32).await;

    // NDJSON: a 20 MiB line (over the 16 MiB limit) is refused and skipped, not buffered.
    let mut nd = Conn::connect(bus.socket()).await;
    nd.send_bytes(b"{\"op\":\"ping\",\"id\":1,\"data\":\"").await;
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..20 {
        if !nd.try_send_bytes(&chunk).await {
            break;
        }
    }
    nd.send_bytes(b"\"}\n{\"op\":\"ping\",\"id\":2}\n").await;
    let refused = line_to(&mut nd, "20 MiB NDJSON line").await;
    assert!(refused.contains("frame_too_large"), "{}", clip(&refused));
    let pong = line_to(&mut nd, "ping after a 20 MiB NDJSON line").await;
    assert!(pong.contains("\"pong\""), "{}", clip(&pong));
    bus.holds("a 20 MiB NDJSON line", 32).await;
}
