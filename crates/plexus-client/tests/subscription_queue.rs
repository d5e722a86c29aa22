//! A subscription's queue on the real broker: it holds at most `subscription_capacity` events,
//! drops the rest and reports exactly how many with the next event, keeps order, gives its room
//! back as events are read, serves a slow reader without a gap going unreported, and ends after
//! the events already received when the connection is gone.

use std::time::Duration;

use plexus_client::{Client, Subscription};
use plexus_test_support::{TestBroker, WAIT};

/// The next event on `subscription`, within the tests' wait.
async fn next_event(subscription: &mut Subscription) -> plexus_client::Event {
    tokio::time::timeout(WAIT, subscription.next())
        .await
        .expect("an event in time")
        .expect("the subscription is open")
}

/// A client of `broker` whose subscriptions queue `capacity` events.
async fn subscriber(broker: &TestBroker, capacity: usize) -> Client {
    Client::builder()
        .address(broker.addr())
        .subscription_capacity(capacity)
        .connect()
        .await
        .expect("subscriber")
}

/// Publishes `first..last` on `topic`, then a marker on `probe.go` that `probe` (a subscription
/// of the same client as the one under test) waits for: the broker delivers one publisher's
/// events in order on one connection, so once the marker is in, so is everything before it.
async fn publish_and_wait(
    publisher: &Client,
    topic: &str,
    range: std::ops::Range<u64>,
    probe: &mut Subscription,
) {
    for i in range {
        publisher.publish(topic, &i).await.expect("publish");
    }
    publisher
        .publish("probe.go", &"marker")
        .await
        .expect("marker");
    assert_eq!(next_event(probe).await.topic, "probe.go");
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_keeps_order_and_gives_its_room_back() {
    const CAPACITY: u64 = 100;
    const PUBLISHED: u64 = 1_000;
    let broker = TestBroker::start().await;
    let client = subscriber(&broker, CAPACITY as usize).await;
    let mut slow = client.subscribe("slow.*").await.expect("subscribe");
    let mut probe = client.subscribe("probe.*").await.expect("probe");
    let publisher = Client::connect_to(&broker.addr()).await.expect("publisher");

    publish_and_wait(&publisher, "slow.seq", 0..PUBLISHED, &mut probe).await;
    for expected in 0..CAPACITY {
        let event = slow.try_next().expect("a queued event");
        assert_eq!(
            (event.json::<u64>().ok(), event.dropped),
            (Some(expected), 0)
        );
    }
    assert!(
        slow.try_next().is_none(),
        "the queue held {CAPACITY} events, no more"
    );

    publish_and_wait(&publisher, "slow.seq", PUBLISHED..PUBLISHED + 1, &mut probe).await;
    let next = slow.try_next().expect("the event after the drops");
    assert_eq!(next.json::<u64>().ok(), Some(PUBLISHED));
    assert_eq!(
        next.dropped,
        (PUBLISHED - CAPACITY) as u32,
        "every drop counted"
    );

    // The room is back in full once the events are read.
    let again = PUBLISHED + 1..PUBLISHED + 1 + CAPACITY;
    publish_and_wait(&publisher, "slow.seq", again.clone(), &mut probe).await;
    for expected in again {
        let event = slow.try_next().expect("every event fits again");
        assert_eq!(
            (event.json::<u64>().ok(), event.dropped),
            (Some(expected), 0)
        );
    }
    assert!(slow.try_next().is_none());
}

/// A reader that pauses every 100 events while `N` events are published at full speed into a
/// queue of 256: the events it gets are in order, and the gap before each is exactly the
/// `dropped` it carries, so received + dropped = published.
async fn a_slow_reader_sees_every_gap_counted() {
    const N: u64 = 20_000;
    const CAPACITY: usize = 256;
    let broker = TestBroker::start().await;
    let client = subscriber(&broker, CAPACITY).await;
    let mut slow = client.subscribe("slow.*").await.expect("subscribe");
    let mut probe = client.subscribe("probe.*").await.expect("probe");
    let mut reader = tokio::spawn(async move {
        let (mut received, mut dropped, mut next) = (0u64, 0u64, 0u64);
        while next <= N {
            let event = next_event(&mut slow).await;
            let seq: u64 = event.json().expect("a number");
            assert!(seq >= next, "in order: {seq} after {next}");
            assert_eq!(seq - next, u64::from(event.dropped), "the gap before {seq}");
            received += 1;
            dropped += u64::from(event.dropped);
            next = seq + 1;
            if received % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        (received, dropped, next)
    });
    let publisher = Client::connect_to(&broker.addr()).await.expect("publisher");
    publish_and_wait(&publisher, "slow.seq", 0..N, &mut probe).await;
    // Events after the burst, until one reaches the reader: it carries the last drops (one
    // published while the queue is still full is dropped and counted like the others).
    let mut last = N;
    let finished = tokio::time::timeout(WAIT * 4, async {
        loop {
            publisher.publish("slow.seq", &last).await.expect("publish");
            last += 1;
            if let Ok(done) = tokio::time::timeout(Duration::from_millis(20), &mut reader).await {
                return done.expect("reader");
            }
        }
    });
    let (received, dropped, next) = finished.await.expect("the reader finished");
    assert!(next > N && next <= last, "ended on one of the last events");
    assert_eq!(
        received + dropped,
        next,
        "received {received}, dropped {dropped}"
    );
    assert!(
        received >= CAPACITY as u64,
        "at least a queue's worth arrived"
    );
}

#[tokio::test]
async fn a_slow_reader_sees_every_gap_counted_on_one_thread() {
    a_slow_reader_sees_every_gap_counted().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_sees_every_gap_counted_on_two_threads() {
    a_slow_reader_sees_every_gap_counted().await;
}

#[tokio::test]
async fn events_received_before_the_connection_ends_are_delivered_then_the_end() {
    let broker = TestBroker::start().await;
    let client = Client::builder()
        .address(broker.addr())
        .reconnect(false)
        .connect()
        .await
        .expect("subscriber");
    let mut events = client.subscribe("last.*").await.expect("subscribe");
    let mut probe = client.subscribe("probe.*").await.expect("probe");
    let publisher = Client::connect_to(&broker.addr()).await.expect("publisher");
    publish_and_wait(&publisher, "last.seq", 0..50, &mut probe).await;
    drop(publisher);
    broker.stop().await;
    for expected in 0..50u64 {
        let event = next_event(&mut events).await;
        assert_eq!(event.json::<u64>().ok(), Some(expected));
    }
    let end = tokio::time::timeout(WAIT, events.next()).await;
    assert!(matches!(end, Ok(None)), "the end after the queued events");
}
