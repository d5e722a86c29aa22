//! Answers count in the outbox: a peer that sends requests and does not read its answers stops
//! being read once they fill its outbox, so the broker holds at most the limit and one answer for
//! it, and every answer still arrives once the peer reads.

use std::net::SocketAddr;

use plexus_broker::Config;
use plexus_proto::{Frame, Kind};
use plexus_test_support::{RawClient, TestBroker, WAIT};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

const MIB: usize = 1024 * 1024;
/// What the outbox counts for a frame besides its wire bytes, at most.
const BOOKKEEPING: usize = 1024;

/// A broker serving metrics, with `outbox_limit` (and frames up to that size: an outbox holds at
/// least the largest frame).
async fn broker_with_metrics(outbox_limit: usize) -> TestBroker {
    TestBroker::with_config(Config {
        outbox_limit,
        max_frame: u32::try_from(outbox_limit).expect("a small limit"),
        http: Some("127.0.0.1:0".parse().expect("addr")),
        ..Config::default()
    })
    .await
}

/// The bytes in the fullest outbox, from the broker's metrics.
async fn fullest_outbox(metrics: SocketAddr) -> usize {
    let mut http = TcpStream::connect(metrics).await.expect("connect metrics");
    http.write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
        .await
        .expect("request");
    let mut text = String::new();
    tokio::time::timeout(WAIT, http.read_to_string(&mut text))
        .await
        .expect("metrics in time")
        .expect("read metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("plexus_outbox_bytes_max "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no plexus_outbox_bytes_max in {text}"))
}

/// Waits (hang guard: [`WAIT`]) until the fullest outbox holds more than `bytes`.
async fn until_outbox_over(metrics: SocketAddr, bytes: usize) {
    tokio::time::timeout(WAIT, async {
        while fullest_outbox(metrics).await <= bytes {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the outbox fills up");
}

/// A native connection whose two halves are separate sockets of the same connection, so one task
/// can write while the test reads.
async fn split_client(broker: &TestBroker, name: &str) -> (RawClient<UnixStream>, UnixStream) {
    let std = std::os::unix::net::UnixStream::connect(&broker.path).expect("connect");
    std.set_nonblocking(true).expect("nonblocking");
    let writer = UnixStream::from_std(std.try_clone().expect("clone")).expect("tokio socket");
    let reader = RawClient::hello(UnixStream::from_std(std).expect("tokio socket"), name).await;
    (reader, writer)
}

#[tokio::test]
async fn a_client_that_pipelines_pings_and_never_reads_is_not_read_past_its_outbox_limit() {
    const PINGS: u64 = 300;
    const PAYLOAD: usize = MIB;
    let limit = 8 * MIB;
    let broker = broker_with_metrics(limit).await;
    let metrics = broker.http.expect("metrics address");
    let (mut pinger, mut writer) = split_client(&broker, "pinger").await;
    let pings = tokio::spawn(async move {
        let payload = vec![7u8; PAYLOAD];
        for id in 1..=PINGS {
            writer
                .write_all(&Frame::ping(id, &payload).to_bytes())
                .await
                .expect("write ping");
        }
        writer
    });

    until_outbox_over(metrics, limit - PAYLOAD).await;
    let mut other = broker.raw_client("other").await;
    let answer = other
        .request(Frame::call(1, "plexus", "ping", 0, b""))
        .await;
    assert_eq!(
        answer.kind(),
        Kind::Reply,
        "another client is served while the pinger is held: {answer:?}"
    );

    let one_answer = Frame::pong(0, &vec![0u8; PAYLOAD]).wire_len() + BOOKKEEPING;
    let mut largest = 0;
    for id in 1..=PINGS {
        largest = largest.max(fullest_outbox(metrics).await);
        let pong = pinger.recv().await;
        assert_eq!(
            (pong.kind(), pong.id()),
            (Kind::Pong, id),
            "every ping is answered, in order"
        );
        assert_eq!(pong.payload().len(), PAYLOAD);
    }
    assert!(
        largest <= limit + one_answer,
        "the broker held {largest} bytes of answers for a peer that did not read; the limit is {limit} and one answer is {one_answer}"
    );
    tokio::time::timeout(WAIT, pings)
        .await
        .expect("the pings are all read once the pinger reads")
        .expect("ping task");
}

#[tokio::test]
async fn a_dialect_peer_that_pipelines_pings_and_never_reads_is_not_read_past_its_outbox_limit() {
    const PINGS: u64 = 3000;
    let limit = 256 * 1024;
    let broker = broker_with_metrics(limit).await;
    let metrics = broker.http.expect("metrics address");
    let std = std::os::unix::net::UnixStream::connect(&broker.path).expect("connect");
    std.set_nonblocking(true).expect("nonblocking");
    let mut writer = UnixStream::from_std(std.try_clone().expect("clone")).expect("tokio socket");
    let reader = UnixStream::from_std(std).expect("tokio socket");
    let data = "x".repeat(1000);
    let pings = tokio::spawn(async move {
        for id in 1..=PINGS {
            let line = format!("{{\"op\":\"ping\",\"id\":{id},\"data\":\"{data}\"}}\n");
            writer.write_all(line.as_bytes()).await.expect("write ping");
        }
        writer
    });

    until_outbox_over(metrics, limit / 2).await;
    let mut other = broker.raw_client("other").await;
    let answer = other
        .request(Frame::call(1, "plexus", "ping", 0, b""))
        .await;
    assert_eq!(answer.kind(), Kind::Reply, "{answer:?}");

    let one_answer =
        Frame::pong(0, format!("\"{}\"", "x".repeat(1000)).as_bytes()).wire_len() + BOOKKEEPING;
    let mut largest = 0;
    let mut lines = BufReader::new(reader).lines();
    for id in 1..=PINGS {
        if id % 10 == 1 {
            largest = largest.max(fullest_outbox(metrics).await);
        }
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("a pong in time")
            .expect("read")
            .expect("a line");
        let pong: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(pong["op"], "pong", "{line}");
        assert_eq!(pong["id"], id, "every ping is answered, in order");
    }
    assert!(
        largest <= limit + one_answer,
        "the broker held {largest} bytes of answers for a peer that did not read; the limit is {limit}"
    );
    tokio::time::timeout(WAIT, pings)
        .await
        .expect("the pings are all read once the peer reads")
        .expect("ping task");
}

/// A broker whose connections get 100 ms to drain their output once they end.
async fn broker_with_short_grace() -> TestBroker {
    TestBroker::with_config(Config {
        shutdown_grace: std::time::Duration::from_millis(100),
        outbox_limit: 64 * MIB,
        ..Config::default()
    })
    .await
}

/// Publishes `events` of 64 KiB on `bulk.data`, each acknowledged as delivered to one subscriber.
async fn publish_bulk(broker: &TestBroker, events: u64) {
    let mut p = broker.raw_client("publisher").await;
    let body = vec![b'x'; 64 * 1024];
    for id in 1..=events {
        let ack = p
            .request(Frame::publish(id, "bulk.data", &body, true))
            .await;
        assert_eq!(
            plexus_test_support::json(&ack)["delivered"],
            1,
            "queued for the subscriber"
        );
    }
}

#[tokio::test]
async fn a_native_peer_that_stops_sending_and_never_reads_is_closed_after_the_grace_period() {
    const EVENTS: u64 = 200;
    let broker = broker_with_short_grace().await;
    let mut stalled = broker.raw_client("never-reads").await;
    stalled.subscribe(1, "bulk.>").await;
    publish_bulk(&broker, EVENTS).await;
    stalled.stream.shutdown().await.expect("half-close");
    // Well past the grace period: a writer still running would now send everything.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let received = stalled.events_until_closed().await;
    assert!(
        received < EVENTS,
        "the writer was aborted at the grace period ({received} of {EVENTS} events arrived)"
    );
}

#[tokio::test]
async fn a_dialect_peer_that_stops_sending_and_never_reads_is_closed_after_the_grace_period() {
    const EVENTS: u64 = 200;
    let broker = broker_with_short_grace().await;
    let mut stalled = UnixStream::connect(&broker.path).await.expect("connect");
    stalled
        .write_all(b"{\"op\":\"subscribe\",\"id\":1,\"pattern\":\"bulk.>\"}\n")
        .await
        .expect("subscribe");
    let (read, mut write) = stalled.into_split();
    let mut lines = BufReader::new(read).lines();
    let confirmed = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("in time")
        .expect("read")
        .expect("a reply");
    assert!(confirmed.contains("\"id\":1"), "{confirmed}");
    publish_bulk(&broker, EVENTS).await;
    write.shutdown().await.expect("half-close");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let mut received = 0;
    while let Some(line) = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the broker closes the connection")
        .unwrap_or(None)
    {
        assert!(
            line.contains("\"event\""),
            "{}",
            &line[..line.len().min(80)]
        );
        received += 1;
    }
    assert!(
        received < EVENTS,
        "output was dropped at the grace period ({received} of {EVENTS} events arrived)"
    );
}

/// The `connections` count in `plexus.stats`, asked on `c`.
async fn connections(c: &mut RawClient<UnixStream>, id: u64) -> u64 {
    let stats = c.request(Frame::call(id, "plexus", "stats", 0, b"")).await;
    plexus_test_support::json(&stats)["connections"]
        .as_u64()
        .expect("a connection count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_closes_while_its_answers_hold_its_reader_is_detached() {
    // Small pings: one read brings hundreds, so the outbox goes over its limit with pings still
    // decoded and not routed, which the reader holds until the outbox drains.
    const PINGS: u64 = 20_000;
    let limit = 64 * 1024;
    let broker = broker_with_metrics(limit).await;
    let metrics = broker.http.expect("metrics address");
    let mut other = broker.raw_client("other").await;
    let (hog, mut writer) = split_client(&broker, "hog").await;
    let pings = tokio::spawn(async move {
        let mut batch = Vec::new();
        for id in 1..=PINGS {
            batch.extend_from_slice(&Frame::ping(id, &[7u8; 200]).to_bytes());
        }
        let _ = writer.write_all(&batch).await;
    });
    until_outbox_over(metrics, limit).await;
    assert_eq!(connections(&mut other, 1).await, 2, "the hog and this one");

    // The hog goes away without reading: its writer fails, and the outbox it held never drains.
    pings.abort();
    let _ = pings.await;
    drop(hog);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut id = 2;
    loop {
        let started = tokio::time::Instant::now();
        let now = connections(&mut other, id).await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "another client's call took {:?} while the hog's connection ended",
            started.elapsed()
        );
        if now == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hog's connection is still attached {WAIT:?} after it closed: its reader, held by the full outbox, never saw that the writer was gone"
        );
        id += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
