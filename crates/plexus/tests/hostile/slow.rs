//! Slow and silent peers: connections that never finish their handshake, a slowloris dribbling
//! one byte per 100 ms, and frames left half-sent. Bound: 32 MiB.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// The broker flag (config key `partial_frame_timeout_ms`) for the partial-frame timeout: how
/// long one frame or dialect message may take from its first byte to its last before the broker
/// closes the connection (30 s by default).
pub const FRAME_TIMEOUT_FLAG: &str = "--partial-frame-timeout-ms";

/// The broker flag (config key `handshake_timeout_ms`) for the handshake timeout: how long a new
/// connection has to send its `hello`, or a dialect connection its first complete message (10 s
/// by default).
pub const HANDSHAKE_TIMEOUT_FLAG: &str = "--handshake-timeout-ms";

/// How much later than its deadline the broker may close a connection: the time for the broker
/// to see it and for the test to see the close, on a loaded machine.
const CLOSE_MARGIN: Duration = Duration::from_secs(4);

/// The pace of a slowloris.
const DRIP: Duration = Duration::from_millis(100);

/// How a dribble ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dribbled {
    /// Every byte was sent and the connection is still open.
    AllSent,
    /// The broker closed the connection after this many bytes of the dribble.
    ClosedAfter(usize),
    /// The time limit passed with the connection still open.
    StillOpen,
}

/// Sends `first` at once, then `drip` one byte per [`DRIP`] until every byte is sent, the
/// broker closes the connection, or `limit` passes; with `linger`, then waits (until `limit`)
/// for the broker to close the connection. Whatever the broker sends is read and thrown away.
async fn dribble(
    conn: Conn,
    first: Vec<u8>,
    drip: Vec<u8>,
    limit: Duration,
    linger: bool,
) -> Dribbled {
    let (mut reader, mut writer) = conn.stream.into_split();
    let closed = Arc::new(AtomicBool::new(false));
    let watcher = {
        let closed = closed.clone();
        tokio::spawn(async move {
            let mut sink = vec![0u8; 64 * 1024];
            while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
            closed.store(true, Ordering::SeqCst);
        })
    };
    let outcome = tokio::time::timeout(limit, async {
        if writer.write_all(&first).await.is_err() {
            return Dribbled::ClosedAfter(0);
        }
        for (i, byte) in drip.iter().enumerate() {
            if closed.load(Ordering::SeqCst) || writer.write_all(&[*byte]).await.is_err() {
                return Dribbled::ClosedAfter(i);
            }
            tokio::time::sleep(DRIP).await;
        }
        while linger && !closed.load(Ordering::SeqCst) {
            tokio::time::sleep(DRIP).await;
        }
        Dribbled::AllSent
    })
    .await
    .unwrap_or(Dribbled::StillOpen);
    let outcome = match outcome {
        Dribbled::AllSent | Dribbled::StillOpen if closed.load(Ordering::SeqCst) => {
            Dribbled::ClosedAfter(drip.len())
        }
        other => other,
    };
    watcher.abort();
    outcome
}

/// 100 connections that send nothing, two that send too few bytes to tell their dialect, an
/// NDJSON and an ipc-broker connection whose first message never ends, and one that dribbles a
/// `hello` too long to finish in time: other clients are unaffected while they wait, and the
/// broker closes each at its handshake timeout (set to 3 s with [`HANDSHAKE_TIMEOUT_FLAG`]; this
/// test waits at most [`CLOSE_MARGIN`] more, well short of the 10 s default, so a broker that
/// ignored the setting would fail it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_never_sent() {
    const HANDSHAKE: Duration = Duration::from_secs(3);
    let bus = Bus::start(&[HANDSHAKE_TIMEOUT_FLAG, "3000"]).await;
    let started = tokio::time::Instant::now();
    let limit = started + HANDSHAKE + CLOSE_MARGIN;
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(Conn::connect(bus.socket()).await);
    }
    let mut undecided = Conn::connect(bus.socket()).await;
    undecided.send_bytes(b"p").await;
    silent.push(undecided);
    let mut undecided = Conn::connect(bus.socket()).await;
    undecided.send_bytes(b"\x00\x00\x00").await;
    silent.push(undecided);
    // The first message of a dialect connection, begun and never finished.
    let mut unfinished = Conn::connect(bus.socket()).await;
    unfinished.send_bytes(b"{\"op\":\"ping\",\"id\":1,").await;
    silent.push(unfinished);
    let mut unfinished = Conn::connect(bus.socket()).await;
    unfinished
        .send_bytes(&ipc_packet(b"{\"HasObject\":{}}")[..10])
        .await;
    silent.push(unfinished);
    // A hello whose client name is 1,000 bytes, dribbled: 100 s at this pace.
    let slow_hello = tokio::spawn(dribble(
        Conn::connect(bus.socket()).await,
        header(0x01, 0, 1, 1000, 0, 0).to_vec(),
        vec![b'x'; 1000],
        HANDSHAKE + CLOSE_MARGIN,
        true,
    ));
    bus.holds(
        "104 connections that sent no complete handshake, and a slow hello",
        32,
    )
    .await;

    let waited = HANDSHAKE + CLOSE_MARGIN;
    for (i, mut c) in silent.into_iter().enumerate() {
        let left = limit.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            c.closed_within(left).await,
            "connection {i} that sent no complete handshake is still open after {waited:?}"
        );
    }
    let outcome = slow_hello.await.expect("dribble task");
    assert!(
        matches!(outcome, Dribbled::ClosedAfter(_)),
        "a hello dribbled for {waited:?} was not cut off at the handshake timeout: {outcome:?}"
    );
    bus.holds("the connections without a handshake were closed", 32)
        .await;
}

/// Slowloris: 20 connections dribble one byte per 100 ms for 3 s (a native frame after a
/// `hello`, a `hello` itself, an NDJSON line, a ProcBridge packet); meanwhile, every 100 ms, the
/// well-behaved client's call is answered within 5 s, and every fourth time so is a new
/// client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_does_not_slow_other_clients() {
    let bus = Bus::start(&[]).await;
    let limit = Duration::from_secs(10);
    let mut dribblers = Vec::new();
    for i in 0..20u64 {
        let (conn, drip) = match i % 4 {
            0 => (
                Conn::hello(bus.socket(), "slowloris").await,
                Frame::ping(i, b"abcdef").to_bytes().to_vec(),
            ),
            1 => (
                Conn::connect(bus.socket()).await,
                Frame::hello("slowloris").to_bytes().to_vec(),
            ),
            2 => (
                Conn::connect(bus.socket()).await,
                b"{\"op\":\"ping\",\"id\":1}\n".to_vec(),
            ),
            _ => (
                Conn::connect(bus.socket()).await,
                pb_packet(0, b"{\"method\":\"a.b\"}"),
            ),
        };
        let drip: Vec<u8> = drip.into_iter().take(30).collect();
        dribblers.push(tokio::spawn(dribble(conn, Vec::new(), drip, limit, false)));
    }
    let mut round = 0;
    while dribblers.iter().any(|d| !d.is_finished()) {
        let act = format!("slowloris dribbling, round {round}");
        bus.echo_call(&bus.client, &act).await;
        if round % 4 == 0 {
            bus.fresh_call(&act).await;
        }
        round += 1;
        tokio::time::sleep(DRIP).await;
    }
    assert!(
        round >= 3,
        "the dribble lasted only {round} rounds of calls"
    );
    bus.holds("20 connections dribbling one byte per 100 ms", 32)
        .await;
}

/// A frame left half-sent, in every framing, dribbled on one byte per 100 ms so that the
/// connection is never idle: the broker closes each within its partial-frame timeout (set to
/// 1 s with [`FRAME_TIMEOUT_FLAG`]; this test waits at most [`CLOSE_MARGIN`] more), and other
/// clients are unaffected meanwhile. Each connection first completes its handshake (a native
/// `hello`; a dialect's first message, answered), so the deadline that closes it is the
/// partial-frame timeout and not the handshake timeout, left at its 10 s default: a broker that
/// did not time out frames begun after the handshake would fail this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_frame_is_closed_by_the_broker() {
    const PARTIAL: Duration = Duration::from_secs(1);
    let bus = Bus::start(&[FRAME_TIMEOUT_FLAG, "1000"]).await;
    let limit = PARTIAL + CLOSE_MARGIN;
    let endless = vec![b'x'; 1000];
    let mut cases = Vec::new();
    // A call whose body never completes.
    cases.push((
        "native call body",
        Conn::hello(bus.socket(), "partial").await,
        header(0x12, 0, 2, 10_000, 0, 1).to_vec(),
        endless.clone(),
    ));
    // Four bytes of a header, then 19 more one at a time: 23 of its 24 bytes, never all.
    cases.push((
        "native header",
        Conn::hello(bus.socket(), "partial").await,
        b"PX\x01\x30".to_vec(),
        vec![0u8; 19],
    ));
    let mut nd = Conn::connect(bus.socket()).await;
    nd.send_bytes(b"{\"op\":\"ping\",\"id\":0}\n").await;
    let pong = line_to(&bus, &mut nd, "an NDJSON ping").await;
    assert!(pong.contains("\"pong\""), "{pong}");
    cases.push((
        "NDJSON line",
        nd,
        b"{\"op\":\"ping\",\"id\":1,\"data\":\"".to_vec(),
        endless.clone(),
    ));
    let mut pb = Conn::connect(bus.socket()).await;
    let request = format!("{{\"method\":\"{ECHO}.echo\",\"payload\":\"first\"}}");
    pb.send_bytes(&pb_packet(0, request.as_bytes())).await;
    let (status, body) = pb.pb().await;
    assert_eq!(status, 1, "a ProcBridge request is answered: {body}");
    let mut partial_pb = pb_packet(0, b"");
    partial_pb[7..11].copy_from_slice(&10_000u32.to_le_bytes());
    cases.push(("ProcBridge packet", pb, partial_pb, endless.clone()));
    let mut ipc = Conn::connect(bus.socket()).await;
    let has = format!("{{\"HasObject\":{{\"object_name\":\"{ECHO}\"}}}}");
    ipc.send_bytes(&ipc_packet(has.as_bytes())).await;
    let answer = ipc.ipc().await;
    assert!(answer.contains("\"exists\":true"), "{answer}");
    let mut partial_ipc = 10_000u32.to_be_bytes().to_vec();
    partial_ipc.push(b'{');
    cases.push(("ipc-broker packet", ipc, partial_ipc, endless.clone()));

    let mut running = Vec::new();
    for (what, conn, first, drip) in cases {
        running.push((what, tokio::spawn(dribble(conn, first, drip, limit, true))));
    }
    bus.holds("five connections each holding a partial frame", 32)
        .await;
    let mut open = Vec::new();
    for (what, task) in running {
        let outcome = task.await.expect("dribble task");
        if !matches!(outcome, Dribbled::ClosedAfter(_)) {
            open.push(format!("a partial {what}: {outcome:?}"));
        }
    }
    assert!(
        open.is_empty(),
        "dribbled for {limit:?} at a partial-frame timeout of {PARTIAL:?}, not closed by the broker: {open:?}"
    );
    bus.holds("the partial frames were closed", 32).await;
}
