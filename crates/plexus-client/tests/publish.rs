//! `publish` without a round trip: it queues and returns, waits only when 1 MiB of publishes is
//! unwritten, keeps order, `flush` waits for the socket, a lost connection is reported to the
//! next publish or flush, and bursts at full speed arrive whole (a hang fails the deadline).

use std::time::Duration;

use plexus_broker::Config;
use plexus_client::{Client, Error};
use plexus_proto::{Frame, Kind};
use plexus_test_support::{RawClient, TestBroker, WAIT};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

/// Bytes of publishes the client queues before `publish` waits (`PUBLISH_QUEUE_BYTES`).
const QUEUE_BYTES: usize = 1024 * 1024;
/// More than a Unix socket holds between a writer and a reader that does not read.
const SOCKET_HOLDS_AT_MOST: usize = 2 * 1024 * 1024;
/// How long a publish must wait before the test takes it as waiting for room.
const WAITING: Duration = Duration::from_millis(300);

/// A broker stand-in that answers `hello` and then reads nothing until told to.
struct StalledBroker {
    _dir: tempfile::TempDir,
    addr: String,
    listener: UnixListener,
}

impl StalledBroker {
    fn start() -> StalledBroker {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("stalled.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        StalledBroker {
            addr: format!("unix:{}", path.display()),
            _dir: dir,
            listener,
        }
    }

    /// Takes the client's connection and answers its `hello`.
    async fn accept(&self) -> RawClient<UnixStream> {
        let (stream, _) = self.listener.accept().await.expect("accept");
        let mut conn = RawClient::raw(stream);
        assert_eq!(conn.recv().await.kind(), Kind::Hello);
        conn.send(Frame::welcome(
            1,
            plexus_proto::DEFAULT_MAX_FRAME,
            "stalled",
        ))
        .await;
        conn
    }
}

/// A client of `addr` that does not reconnect.
async fn client_of(addr: &str) -> Client {
    Client::builder()
        .address(addr)
        .reconnect(false)
        .connect()
        .await
        .expect("connect")
}

/// Publishes numbered events on `seq` until one waits [`WAITING`] for room; returns how many
/// were queued and their bytes on the wire. The publish that waited was dropped, so never sent.
async fn publish_until_full(client: &Client) -> (u64, usize) {
    let (mut count, mut bytes) = (0u64, 0usize);
    loop {
        let body = count.to_string();
        let publish = client.publish_raw("seq", body.as_bytes());
        match tokio::time::timeout(WAITING, publish).await {
            Ok(published) => published.expect("publish"),
            Err(_waited) => return (count, bytes),
        }
        count += 1;
        bytes += Frame::publish(0, "seq", body.as_bytes(), false).wire_len();
        assert!(
            bytes < QUEUE_BYTES + SOCKET_HOLDS_AT_MOST,
            "publish never waits: {bytes} bytes queued for a broker that reads nothing"
        );
    }
}

#[tokio::test]
async fn publish_returns_before_the_write_waits_at_the_bound_and_flush_waits_for_the_socket() {
    let broker = StalledBroker::start();
    let (client, conn) = tokio::join!(client_of(&broker.addr), broker.accept());
    let mut conn = conn;

    let (count, bytes) = publish_until_full(&client).await;
    assert!(
        bytes + 64 >= QUEUE_BYTES,
        "publish waited for the socket after {bytes} bytes, before its queue was full"
    );
    let flush = tokio::time::timeout(WAITING, client.flush()).await;
    assert!(flush.is_err(), "flush waits while the broker reads nothing");

    let (read_all, all_read) = oneshot::channel();
    tokio::spawn(async move {
        let mut seqs = Vec::new();
        while let Some(frame) = conn.try_recv(WAIT).await.expect("frames or the end") {
            assert_eq!(frame.kind(), Kind::Publish);
            assert_eq!(frame.string(0), "seq");
            let seq: u64 = serde_json::from_slice(&frame.payload()).expect("a number");
            seqs.push(seq);
        }
        let _ = read_all.send(seqs);
    });
    tokio::time::timeout(WAIT, client.flush())
        .await
        .expect("flush returns once the broker reads")
        .expect("flushed");
    client
        .publish_raw("seq", count.to_string().as_bytes())
        .await
        .expect("room again");
    drop(client);
    let seqs = all_read.await.expect("the stand-in read to the end");
    assert_eq!(
        seqs,
        (0..=count).collect::<Vec<_>>(),
        "every event queued arrived once, in order"
    );
}

/// A flush that arrives while the socket task is writing the last publishes, with nothing after
/// it, returns once they are written (it used to wait forever: found as a hang of the pinned
/// fan-out bench).
#[tokio::test]
async fn a_flush_behind_a_blocked_write_returns_once_the_write_finishes() {
    let broker = StalledBroker::start();
    let (client, conn) = tokio::join!(client_of(&broker.addr), broker.accept());
    let mut conn = conn;
    // Less than one write batch (so the socket task takes it all in one go), more than the
    // socket holds (so that write blocks).
    let body = vec![b'7'; 1000];
    let events = 240;
    for _ in 0..events {
        client.publish_raw("big", &body).await.expect("publish");
    }
    tokio::time::sleep(WAITING).await;
    let flush = tokio::spawn({
        let client = client.clone();
        async move { client.flush().await }
    });
    tokio::time::sleep(WAITING).await;
    assert!(
        !flush.is_finished(),
        "flush waits while the broker reads nothing"
    );
    let mut read = 0;
    while read < events {
        let frame = conn.recv().await;
        assert_eq!(frame.kind(), Kind::Publish);
        read += 1;
    }
    tokio::time::timeout(WAIT, flush)
        .await
        .expect("flush returns once everything before it is written")
        .expect("flush task")
        .expect("flushed");
}

#[tokio::test]
async fn publishes_dropped_with_the_connection_fail_the_next_flush_then_the_client_is_closed() {
    let broker = StalledBroker::start();
    let (client, conn) = tokio::join!(client_of(&broker.addr), broker.accept());
    publish_until_full(&client).await;
    drop(conn);

    let flushed = tokio::time::timeout(WAIT, client.flush())
        .await
        .expect("flush answers once the connection is gone");
    assert!(
        matches!(&flushed, Err(Error::ConnectionLost(_))),
        "the loss is reported: {flushed:?}"
    );
    let next = tokio::time::timeout(WAIT, client.publish_raw("seq", b"1"))
        .await
        .expect("publish answers on a closed client");
    assert!(
        matches!(next, Err(Error::Closed)),
        "reported once; then the client is closed: {next:?}"
    );
}

#[tokio::test]
async fn a_publish_during_an_outage_fails_the_next_publish_and_works_again_after_reconnecting() {
    let broker = TestBroker::start().await;
    let client = Client::connect_to(&broker.addr()).await.expect("connect");
    let stopped = broker.stop().await;

    let failed = tokio::time::timeout(WAIT, async {
        loop {
            match client.publish_raw("outage", b"1").await {
                Ok(()) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("a publish while the broker is gone fails the next one");
    assert!(
        matches!(failed, Error::NotConnected | Error::ConnectionLost(_)),
        "{failed:?}"
    );

    let broker = stopped.restart().await;
    let subscriber = Client::connect_to(&broker.addr()).await.expect("connect");
    let mut events = subscriber.subscribe("back").await.expect("subscribe");
    let delivered = tokio::time::timeout(WAIT, async {
        loop {
            // Until the client has reconnected, its publishes are refused (and reported).
            if client.publish_raw("back", b"1").await.is_ok() && client.flush().await.is_ok() {
                if let Ok(Some(event)) =
                    tokio::time::timeout(Duration::from_millis(100), events.next()).await
                {
                    return event;
                }
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
    .await
    .expect("publishing works again after the reconnect");
    assert_eq!(delivered.topic, "back");
}

/// One publisher, three subscribers, `N` events at full speed and an end marker: every
/// subscriber gets every event in order, then the end, before the deadline.
async fn burst_arrives_whole() {
    const N: u64 = 200_000;
    const SUBSCRIBERS: usize = 3;
    let config = Config {
        outbox_limit: 256 * 1024 * 1024,
        ..Config::default()
    };
    let broker = TestBroker::with_config(config).await;
    let mut readers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let sub = Client::builder()
            .address(broker.addr())
            .subscription_capacity(N as usize + 1)
            .connect()
            .await
            .expect("subscriber");
        let mut events = sub.subscribe("burst.*").await.expect("subscribe");
        readers.push(tokio::spawn(async move {
            let _keep = sub;
            let mut next = 0u64;
            while let Some(event) = events.next().await {
                assert_eq!(event.dropped, 0, "nothing dropped");
                if event.topic == "burst.end" {
                    return next;
                }
                assert_eq!(event.json::<u64>().expect("number"), next, "in order");
                next += 1;
            }
            panic!("the subscription ended before the end marker");
        }));
    }
    let publisher = Client::connect_to(&broker.addr()).await.expect("publisher");
    for i in 0..N {
        publisher
            .publish_raw("burst.seq", i.to_string().as_bytes())
            .await
            .expect("publish");
    }
    publisher
        .publish_raw("burst.end", b"null")
        .await
        .expect("end");
    for reader in readers {
        assert_eq!(reader.await.expect("reader"), N, "every event arrived");
    }
    publisher.flush().await.expect("flushed");
}

/// The deadline that turns a hang into a failure (debug build, shared CPUs).
const BURST_DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_burst_at_full_speed_arrives_whole_on_one_thread() {
    tokio::time::timeout(BURST_DEADLINE, burst_arrives_whole())
        .await
        .expect("the burst arrived before the deadline (no hang)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_at_full_speed_arrives_whole_on_two_threads() {
    tokio::time::timeout(BURST_DEADLINE, burst_arrives_whole())
        .await
        .expect("the burst arrived before the deadline (no hang)");
}

#[test]
fn a_blocking_client_writes_the_events_it_queued_when_it_is_dropped() {
    const N: u64 = 5_000;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let broker = runtime.block_on(TestBroker::start());
    let subscriber = plexus_client::blocking::Client::connect_to(&broker.addr()).expect("sub");
    let mut events = subscriber.subscribe("dropped.*").expect("subscribe");
    let publisher = plexus_client::blocking::Client::connect_to(&broker.addr()).expect("pub");
    for i in 0..N {
        publisher.publish("dropped.seq", &i).expect("publish");
    }
    drop(publisher);
    for i in 0..N {
        let event = events
            .recv_timeout(WAIT)
            .expect("every event queued arrives");
        assert_eq!(event.json::<u64>().expect("number"), i);
    }
    drop((events, subscriber));
    drop(broker);
}
