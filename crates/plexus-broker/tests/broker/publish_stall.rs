//! Publish stall: a publisher whose events leave a subscriber's outbox past half its limit is not
//! read from until that subscriber drains it (0 lost), for at most `publish_stall`; a subscriber
//! that reads nothing in that time costs its publishers that one stall, then gets drops.
//!
//! The bounds are long (seconds) where nothing may be lost, so that a loaded machine cannot turn
//! a slow reader into a "stuck" one; where a subscriber never reads, only liveness is asserted.

use std::time::Duration;

use plexus_broker::{Broker, BrokerError, Config};
use plexus_proto::{Frame, Kind};
use plexus_test_support::{RawClient, TestBroker, WAIT, json};
use tokio::net::UnixStream;

/// A broker with small outboxes (128 KiB: the mark is 64 KiB) and publish stalls of `stall`.
async fn broker(stall: Duration) -> TestBroker {
    TestBroker::with_config(Config {
        max_frame: 64 * 1024,
        outbox_limit: 128 * 1024,
        publish_stall: stall,
        ..Config::default()
    })
    .await
}

async fn stats(c: &mut RawClient<UnixStream>, id: u64) -> serde_json::Value {
    json(&c.request(Frame::call(id, "plexus", "stats", 0, b"")).await)
}

/// Reads `total` events of subscription 1, pausing `pause` after every `every`; fails if any
/// tells of a drop.
async fn read_all(
    mut sub: RawClient<UnixStream>,
    total: u64,
    every: u64,
    pause: Duration,
) -> RawClient<UnixStream> {
    for n in 1..=total {
        let ev = sub.recv().await;
        assert_eq!(ev.kind(), Kind::Event, "{ev:?}");
        assert_eq!(ev.aux(), 0, "event {n} of {total} tells of drops before it");
        if n % every == 0 {
            tokio::time::sleep(pause).await;
        }
    }
    sub
}

#[tokio::test]
async fn a_stalled_publisher_is_not_read_until_its_subscriber_reads_and_nothing_is_lost() {
    let broker = broker(Duration::from_secs(30)).await;
    let mut sub = broker.raw_client("sub").await;
    sub.subscribe(1, "flood").await;
    let mut publisher = broker.raw_client("publisher").await;
    // 4 MiB of events: more than the subscriber's socket, its outbox and the publisher's socket
    // hold together.
    let total = 4096u64;
    let body = vec![b'x'; 1024];
    let mut publishing = tokio::spawn(async move {
        for _ in 0..total {
            publisher
                .send(Frame::publish(0, "flood", &body, false))
                .await;
        }
        let pong = publisher.request(Frame::ping(7, b"")).await;
        assert_eq!(pong.kind(), Kind::Pong);
    });
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut publishing)
            .await
            .is_err(),
        "the publisher is held while its subscriber reads nothing (a 30 s stall)"
    );
    // Other connections are served meanwhile.
    let mut other = broker.raw_client("other").await;
    let pong = other.request(Frame::ping(1, b"")).await;
    assert_eq!(pong.kind(), Kind::Pong);
    assert_eq!(stats(&mut other, 2).await["events_dropped"], 0);
    // The subscriber reads: the publisher goes on, and every event arrives.
    let reading = tokio::spawn(read_all(sub, total, u64::MAX, Duration::ZERO));
    tokio::time::timeout(WAIT, publishing)
        .await
        .expect("the publisher finishes once its subscriber reads")
        .expect("publisher");
    reading.await.expect("subscriber");
    let s = stats(&mut other, 3).await;
    assert_eq!(s["events_dropped"], 0, "{s}");
    assert_eq!(s["events_delivered"], total, "{s}");
}

#[tokio::test]
async fn a_subscriber_that_never_reads_costs_one_stall_and_a_slow_reader_loses_nothing() {
    let stall = Duration::from_secs(2);
    let broker = broker(stall).await;
    let mut dead = broker.raw_client("dead").await;
    dead.subscribe(1, "flood").await;
    let mut slow = broker.raw_client("slow").await;
    slow.subscribe(1, "flood").await;
    let mut publisher = broker.raw_client("publisher").await;
    let total = 10_000u64;
    // The slow subscriber reads all the time, but far slower than the publisher sends.
    let reading = tokio::spawn(read_all(slow, total, 64, Duration::from_millis(2)));
    let body = vec![b'y'; 256];
    let publishing = async {
        for _ in 0..total {
            publisher
                .send(Frame::publish(0, "flood", &body, false))
                .await;
        }
        publisher.request(Frame::ping(1, b"")).await
    };
    // Liveness, not timing: 10,000 stalls would take hours; one takes 2 s.
    let pong = tokio::time::timeout(Duration::from_secs(120), publishing)
        .await
        .expect("the publisher is stalled once by the subscriber that never reads, not per event");
    assert_eq!(pong.kind(), Kind::Pong);
    tokio::time::timeout(Duration::from_secs(120), reading)
        .await
        .expect("the slow subscriber gets every event")
        .expect("slow subscriber");
    // The subscriber that never read lost events: counted, and told when it reads.
    let s = stats(&mut publisher, 2).await;
    let dropped = s["events_dropped"].as_u64().expect("events_dropped");
    assert!(dropped > 0, "{s}");
    let mut received = 0u64;
    let mut told = 0u64;
    while let Ok(Some(ev)) = dead.try_recv(Duration::from_millis(500)).await {
        received += 1;
        told += u64::from(ev.aux());
    }
    publisher
        .send(Frame::publish(0, "flood", b"last", false))
        .await;
    let last = dead.recv().await;
    assert_eq!(last.payload().as_ref(), b"last");
    told += u64::from(last.aux());
    assert_eq!(told, dropped, "every drop is told");
    assert_eq!(received + told, total);
}

#[tokio::test]
async fn a_publish_stall_over_a_minute_is_refused() {
    let config = Config {
        publish_stall: Duration::from_secs(61),
        no_unix: true,
        ..Config::default()
    };
    match Broker::bind(config).await {
        Err(BrokerError::InvalidConfig(why)) => assert!(
            why.contains("publish_stall 61000 ms") && why.contains("60000 ms"),
            "{why}"
        ),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a 61 s publish stall was accepted"),
    }
}

/// Reads queue events (subscription 1) until the event on `done` (subscription 2): how many came,
/// pausing `pause` after every 64; fails if any tells of a drop.
async fn queue_events_until_done(mut member: RawClient<UnixStream>, pause: Duration) -> u64 {
    let mut got = 0u64;
    loop {
        let ev = member.recv().await;
        assert_eq!(ev.kind(), Kind::Event, "{ev:?}");
        assert_eq!(
            ev.aux(),
            0,
            "the group was told of drops after {got} events"
        );
        if ev.id() == 2 {
            return got;
        }
        got += 1;
        if got.is_multiple_of(64) {
            tokio::time::sleep(pause).await;
        }
    }
}

#[tokio::test]
async fn a_queue_group_with_a_member_that_never_reads_loses_nothing_while_another_reads() {
    let broker = broker(Duration::from_secs(2)).await;
    let mut members = Vec::new();
    for name in ["dead", "slow"] {
        let mut m = broker.raw_client(name).await;
        let r = m
            .request(Frame::subscribe_queue(1, "jobs", "workers"))
            .await;
        assert_eq!(r.kind(), Kind::Reply);
        m.subscribe(2, "done").await;
        members.push(m);
    }
    let slow = members.pop().expect("slow");
    let mut dead = members.pop().expect("dead");
    let reading = tokio::spawn(queue_events_until_done(slow, Duration::from_millis(2)));
    let mut publisher = broker.raw_client("publisher").await;
    let total = 10_000u64;
    let body = vec![b'z'; 256];
    let publishing = async {
        for _ in 0..total {
            publisher
                .send(Frame::publish(0, "jobs", &body, false))
                .await;
        }
        publisher.send(Frame::publish(0, "done", b"", false)).await;
        publisher.request(Frame::ping(1, b"")).await
    };
    tokio::time::timeout(Duration::from_secs(120), publishing)
        .await
        .expect("the publisher finishes: the member that never reads stalls it once");
    let to_slow = tokio::time::timeout(Duration::from_secs(120), reading)
        .await
        .expect("the reading member gets its events and the end")
        .expect("slow member");
    // The member that never read holds what its outbox and socket took (its `done` may not
    // have fitted); nothing was dropped.
    let mut to_dead = 0u64;
    while let Ok(Some(ev)) = dead.try_recv(Duration::from_millis(500)).await {
        assert_eq!(ev.aux(), 0, "{ev:?}");
        to_dead += u64::from(ev.id() == 1);
    }
    assert_eq!(to_slow + to_dead, total);
    assert!(to_slow > to_dead, "slow {to_slow}, dead {to_dead}");
    let s = stats(&mut publisher, 2).await;
    assert_eq!(s["events_dropped"], 0, "{s}");
}
