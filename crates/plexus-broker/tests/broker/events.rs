//! Publish and subscribe: wildcards, acknowledgements, drops reported, unsubscribe.

use std::time::Duration;

use plexus_broker::Config;
use plexus_proto::{Frame, Kind};

use plexus_test_support::{TestBroker, json};

#[tokio::test]
async fn wildcard_subscriptions_receive_exactly_their_topics() {
    let broker = TestBroker::start().await;
    let mut exact = broker.raw_client("exact").await;
    exact.subscribe(1, "sensor.temp").await;
    let mut star = broker.raw_client("star").await;
    star.subscribe(1, "sensor.*").await;
    let mut rest = broker.raw_client("rest").await;
    rest.subscribe(1, "sensor.>").await;
    let mut mid = broker.raw_client("mid").await;
    mid.subscribe(7, "*.temp").await;
    let mut publisher = broker.raw_client("pub").await;

    for topic in [
        "sensor.temp",
        "sensor.hum",
        "sensor.room1.temp",
        "other.temp",
        "sensor",
    ] {
        let ack = publisher
            .request(Frame::publish(1, topic, topic.as_bytes(), true))
            .await;
        assert_eq!(ack.kind(), Kind::Reply);
        let expected = [
            ("sensor.temp", 4),
            ("sensor.hum", 2),
            ("sensor.room1.temp", 1),
            ("other.temp", 1),
            ("sensor", 0),
        ];
        let want = expected.iter().find(|(t, _)| *t == topic).map(|(_, n)| *n);
        assert_eq!(json(&ack)["delivered"].as_u64(), want, "{topic}");
    }
    let expect = |name: &str, topics: &[&str]| {
        (
            name.to_owned(),
            topics.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        )
    };
    for (client, (name, topics)) in [
        (&mut exact, expect("exact", &["sensor.temp"])),
        (&mut star, expect("star", &["sensor.temp", "sensor.hum"])),
        (
            &mut rest,
            expect("rest", &["sensor.temp", "sensor.hum", "sensor.room1.temp"]),
        ),
        (&mut mid, expect("mid", &["sensor.temp", "other.temp"])),
    ] {
        let mut got = Vec::new();
        for _ in 0..topics.len() {
            let ev = client.recv().await;
            assert_eq!(ev.kind(), Kind::Event, "{name}");
            assert_eq!(
                ev.payload(),
                ev.string(0).as_bytes(),
                "body forwarded unchanged"
            );
            got.push(ev.string(0).to_owned());
        }
        assert_eq!(got, topics, "{name}");
        let extra = client.try_recv(Duration::from_millis(50)).await;
        assert!(extra.is_err(), "{name} got nothing more: {extra:?}");
    }
    mid.send(Frame::publish(0, "x.temp", b"1", false)).await;
    assert_eq!(mid.recv().await.id(), 7, "events carry the subscription id");
}

#[tokio::test]
async fn two_matching_subscriptions_get_one_event_each_and_unsubscribe_stops_one() {
    let broker = TestBroker::start().await;
    let mut s = broker.raw_client("s").await;
    s.subscribe(1, "a.b").await;
    s.subscribe(2, "a.*").await;
    let mut p = broker.raw_client("p").await;
    p.send(Frame::publish(0, "a.b", b"1", false)).await;
    let mut ids = vec![s.recv().await.id(), s.recv().await.id()];
    ids.sort();
    assert_eq!(ids, [1, 2]);
    s.send(Frame::unsubscribe(1)).await;
    let pong = s.request(Frame::ping(3, b"")).await;
    assert_eq!(pong.kind(), Kind::Pong);
    p.send(Frame::publish(0, "a.b", b"2", false)).await;
    let ev = s.recv().await;
    assert_eq!((ev.id(), ev.payload().as_ref()), (2, &b"2"[..]));
    assert!(
        s.try_recv(Duration::from_millis(50)).await.is_err(),
        "subscription 1 is gone"
    );
}

#[tokio::test]
async fn a_slow_subscriber_loses_events_counted_and_told_and_others_get_all() {
    let config = Config {
        outbox_limit: 16 * 1024,
        max_frame: 16 * 1024,
        ..Config::default()
    };
    let broker = TestBroker::with_config(config).await;
    let mut slow = broker.raw_client("slow").await;
    slow.subscribe(1, "flood").await;
    let mut fast = broker.raw_client("fast").await;
    fast.subscribe(1, "flood").await;
    let mut p = broker.raw_client("p").await;
    let body = vec![b'7'; 8 * 1024];
    let total = 200u64;
    let reader = tokio::spawn(async move {
        let mut n = 0u64;
        while n < total {
            let ev = fast.recv().await;
            assert_eq!(ev.aux(), 0, "the fast subscriber loses nothing");
            n += 1;
        }
        n
    });
    let mut dropped_by_broker = 0;
    for i in 0..total {
        let ack = p.request(Frame::publish(i + 1, "flood", &body, true)).await;
        dropped_by_broker += json(&ack)["dropped"].as_u64().unwrap_or(0);
    }
    assert_eq!(reader.await.expect("fast reader"), total);
    assert!(
        dropped_by_broker > 0,
        "the slow subscriber's outbox overflowed"
    );
    // Draining the slow subscriber: what it received plus what it was told it lost is everything.
    let mut received = 0u64;
    let mut told_dropped = 0u64;
    while let Ok(Some(ev)) = slow.try_recv(Duration::from_millis(300)).await {
        received += 1;
        told_dropped += u64::from(ev.aux());
    }
    p.send(Frame::publish(0, "flood", b"1", false)).await;
    let last = slow.recv().await;
    told_dropped += u64::from(last.aux());
    assert_eq!(
        told_dropped, dropped_by_broker,
        "every drop is reported to the subscriber"
    );
    assert_eq!(received + told_dropped, total);
    let stats = p.request(Frame::call(999, "plexus", "stats", 0, b"")).await;
    assert_eq!(
        json(&stats)["events_dropped"].as_u64(),
        Some(dropped_by_broker)
    );
}

/// Reads a member's queue events (subscription `queue_sub`) until the event on `done.`, which
/// it also subscribes to; returns how many it got.
async fn queue_events_until_done(
    c: &mut plexus_test_support::RawClient<tokio::net::UnixStream>,
    queue_sub: u64,
) -> usize {
    let mut got = 0;
    loop {
        let ev = c.recv().await;
        assert_eq!(ev.kind(), Kind::Event, "{ev:?}");
        if ev.string(0) == "done" {
            return got;
        }
        assert_eq!(ev.id(), queue_sub);
        assert_eq!(ev.aux(), 0, "nothing was dropped");
        got += 1;
    }
}

#[tokio::test]
async fn each_event_reaches_one_member_of_a_queue_group_and_every_plain_subscriber() {
    let broker = TestBroker::start().await;
    let mut members = Vec::new();
    for i in 0..3 {
        let mut m = broker.raw_client(&format!("member-{i}")).await;
        let r = m
            .request(Frame::subscribe_queue(7, "jobs.*", "workers"))
            .await;
        assert_eq!(r.kind(), Kind::Reply, "{r:?}");
        m.subscribe(8, "done").await;
        members.push(m);
    }
    let mut plain = broker.raw_client("plain").await;
    plain.subscribe(1, "jobs.*").await;
    let mut p = broker.raw_client("publisher").await;
    for i in 0..30 {
        let ack = p
            .request(Frame::publish(i + 1, "jobs.run", b"1", true))
            .await;
        assert_eq!(
            json(&ack)["delivered"],
            2,
            "the plain subscriber and one member"
        );
    }
    p.request(Frame::publish(99, "done", b"", true)).await;
    for _ in 0..30 {
        assert_eq!(plain.recv().await.string(0), "jobs.run");
    }
    let mut counts = Vec::new();
    for m in &mut members {
        counts.push(queue_events_until_done(m, 7).await);
    }
    assert_eq!(counts.iter().sum::<usize>(), 30, "{counts:?}");
    assert!(counts.iter().all(|n| *n >= 1), "{counts:?}");
    assert_eq!(counts, [10, 10, 10], "round-robin while no outbox is full");

    let stats = p.request(Frame::call(100, "plexus", "stats", 0, b"")).await;
    assert_eq!(
        json(&stats)["subscriptions"],
        7,
        "members count as subscriptions"
    );
    for m in &mut members[..2] {
        m.send(Frame::unsubscribe(7)).await;
        assert_eq!(m.request(Frame::ping(9, b"")).await.kind(), Kind::Pong);
    }
    for i in 0..3 {
        let ack = p
            .request(Frame::publish(101 + i, "jobs.run", b"1", true))
            .await;
        assert_eq!(json(&ack)["delivered"], 2);
    }
    p.request(Frame::publish(200, "done", b"", true)).await;
    assert_eq!(
        queue_events_until_done(&mut members[2], 7).await,
        3,
        "the member left gets every event"
    );
}

#[tokio::test]
async fn queue_group_members_count_against_the_subscription_limits() {
    let broker = TestBroker::with_config(Config {
        max_subscriptions_per_connection: 1,
        ..Config::default()
    })
    .await;
    let mut c = broker.raw_client("c").await;
    let r = c.request(Frame::subscribe_queue(1, "a.>", "g")).await;
    assert_eq!(r.kind(), Kind::Reply);
    let r = c.request(Frame::subscribe_queue(2, "a.>", "g")).await;
    assert_eq!(r.kind(), Kind::Error);
    assert!(
        r.string(0).contains("max_subscriptions_per_connection = 1"),
        "{r:?}"
    );
    let r = c
        .request(Frame::subscribe_queue(3, "a.>", "bad group!"))
        .await;
    assert_eq!(r.kind(), Kind::Error, "a group is named like an object");
}

#[tokio::test]
async fn plexus_subscriptions_lists_every_subscription_with_its_queue_and_connection() {
    let broker = TestBroker::start().await;
    let mut plain = broker.raw_client("plain-listener").await;
    plain.subscribe(1, "sensor.>").await;
    plain.subscribe(2, "alerts.*").await;
    let mut member = broker.raw_client("queue-member").await;
    let r = member
        .request(Frame::subscribe_queue(1, "jobs.*", "workers"))
        .await;
    assert_eq!(r.kind(), Kind::Reply);
    let mut asker = broker.raw_client("asker").await;
    let answer = asker
        .request(Frame::call(1, "plexus", "subscriptions", 0, b""))
        .await;
    assert_eq!(answer.kind(), Kind::Reply, "{answer:?}");
    let subs = json(&answer);
    let subs = subs.as_array().expect("an array");
    assert_eq!(subs.len(), 3, "{subs:?}");
    let find = |pattern: &str| {
        subs.iter()
            .find(|s| s["pattern"] == pattern)
            .unwrap_or_else(|| panic!("{pattern} is listed: {subs:?}"))
    };
    for pattern in ["sensor.>", "alerts.*"] {
        let sub = find(pattern);
        assert_eq!(sub["client"], "plain-listener");
        assert!(sub.get("queue").is_none(), "not in a group: {sub}");
        assert_eq!(sub["pid"], std::process::id());
    }
    let queued = find("jobs.*");
    assert_eq!(queued["client"], "queue-member");
    assert_eq!(queued["queue"], "workers");
    assert_ne!(queued["conn_id"], find("sensor.>")["conn_id"]);

    plain.send(Frame::unsubscribe(2)).await;
    let pong = plain.request(Frame::ping(3, b"")).await;
    assert_eq!(pong.kind(), Kind::Pong, "the unsubscribe before it is done");
    let answer = asker
        .request(Frame::call(2, "plexus", "subscriptions", 0, b""))
        .await;
    let patterns: Vec<_> = json(&answer)
        .as_array()
        .expect("an array")
        .iter()
        .map(|s| s["pattern"].clone())
        .collect();
    assert_eq!(
        patterns.len(),
        2,
        "the unsubscribed one is gone: {patterns:?}"
    );
    assert!(!patterns.contains(&serde_json::json!("alerts.*")));
}
