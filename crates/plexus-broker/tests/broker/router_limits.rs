//! The router's limits (issue 11): each refuses with a message naming the limit and its value,
//! and leaves everything else as it was.

use std::time::Duration;

use plexus_broker::{Broker, BrokerError, Config, SlowConsumer};
use plexus_proto::{ErrorCode, Frame, Kind};

use plexus_test_support::{RawClient, TestBroker, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A `plexus.wait_for` call with these params.
fn wait_for(id: u64, timeout_ms: u32, params: &str) -> Frame {
    Frame::call(id, "plexus", "wait_for", timeout_ms, params.as_bytes())
}

/// `plexus.stats` as JSON.
async fn stats(c: &mut RawClient<UnixStream>, id: u64) -> serde_json::Value {
    json(&c.request(Frame::call(id, "plexus", "stats", 0, b"")).await)
}

/// Expects the next frame to answer request `id` with `code`, with a message that names `limit`.
async fn expect_refused(c: &mut RawClient<UnixStream>, id: u64, code: ErrorCode, limit: &str) {
    let err = c.expect_error(code).await;
    assert_eq!(err.id(), id, "{}", err.string(0));
    assert!(
        err.string(0).contains(limit),
        "names {limit}: {}",
        err.string(0)
    );
}

#[tokio::test]
async fn a_call_and_an_event_bigger_than_half_the_frame_limit_reach_an_idle_peer() {
    let broker = TestBroker::start().await;
    let mut worker = broker.raw_client("worker").await;
    worker.register(1, "big").await;
    worker.subscribe(2, "big.news").await;
    let mut caller = broker.raw_client("caller").await;
    let body = vec![b'7'; 9 * 1024 * 1024];

    caller
        .send(Frame::call(1, "big", "take", 5000, &body))
        .await;
    let call = worker.recv().await;
    assert_eq!(call.kind(), Kind::Call, "{:?}", call.string(0));
    assert_eq!(call.payload().len(), body.len());
    worker.send(Frame::reply(call.id(), b"1")).await;
    assert_eq!(caller.recv().await.kind(), Kind::Reply);

    let ack = caller
        .request(Frame::publish(2, "big.news", &body, true))
        .await;
    assert_eq!(json(&ack)["delivered"], 1, "{}", json(&ack));
    let event = worker.recv().await;
    assert_eq!(
        (event.kind(), event.payload().len()),
        (Kind::Event, body.len())
    );
}

#[tokio::test]
async fn an_outbox_limit_below_the_frame_limit_is_refused() {
    let config = Config {
        outbox_limit: 1024 * 1024,
        no_unix: true,
        ..Config::default()
    };
    match Broker::bind(config).await {
        Err(BrokerError::InvalidConfig(why)) => assert!(
            why.contains("outbox_limit 1048576") && why.contains("max_frame 16842752"),
            "{why}"
        ),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("an outbox that cannot hold a frame was accepted"),
    }
    let config = Config {
        outbox_limit: 4096,
        max_frame: 4096,
        no_unix: true,
        ..Config::default()
    };
    assert!(
        Broker::bind(config).await.is_ok(),
        "an outbox as big as the frame limit is fine"
    );
}

#[tokio::test]
async fn waits_count_in_the_pending_limit_of_their_connection() {
    let broker = TestBroker::with_config(Config {
        max_pending_per_connection: 3,
        ..Config::default()
    })
    .await;
    let mut worker = broker.raw_client("worker").await;
    worker.register(1, "svc").await;
    let mut waiter = broker.raw_client("waiter").await;
    for id in 1..=3 {
        waiter
            .send(wait_for(id, 0, &format!(r#"["absent.{id}"]"#)))
            .await;
    }
    waiter.send(wait_for(4, 0, r#"["absent.4"]"#)).await;
    expect_refused(
        &mut waiter,
        4,
        ErrorCode::Overloaded,
        "max_pending_per_connection = 3",
    )
    .await;
    waiter.send(Frame::call(5, "svc", "m", 0, b"")).await;
    expect_refused(
        &mut waiter,
        5,
        ErrorCode::Overloaded,
        "max_pending_per_connection = 3",
    )
    .await;
    let s = stats(&mut waiter, 6).await;
    assert_eq!(s["pending_waits"], 3, "{s}");

    let mut other = broker.raw_client("other").await;
    other.register(1, "absent.1").await;
    let answered = waiter.recv().await;
    assert_eq!((answered.kind(), answered.id()), (Kind::Reply, 1));
    waiter.send(wait_for(7, 0, r#"["absent.7"]"#)).await;
    let pong = waiter.request(Frame::ping(8, b"")).await;
    assert_eq!(
        pong.kind(),
        Kind::Pong,
        "an answered wait made room for another"
    );
    other.register(2, "absent.7").await;
    let answered = waiter.recv().await;
    assert_eq!((answered.kind(), answered.id()), (Kind::Reply, 7));
}

#[tokio::test]
async fn the_broker_wide_pending_limit_counts_every_connection() {
    let broker = TestBroker::with_config(Config {
        max_pending: 2,
        ..Config::default()
    })
    .await;
    let mut worker = broker.raw_client("worker").await;
    worker.register(1, "svc").await;
    let mut a = broker.raw_client("a").await;
    a.send(wait_for(1, 0, r#"["absent"]"#)).await;
    a.send(Frame::call(2, "svc", "m", 0, b"")).await;
    assert_eq!(worker.recv().await.kind(), Kind::Call);
    let mut b = broker.raw_client("b").await;
    b.send(Frame::call(1, "svc", "m", 0, b"")).await;
    expect_refused(&mut b, 1, ErrorCode::Overloaded, "max_pending = 2").await;
    b.send(wait_for(2, 0, r#"["absent"]"#)).await;
    expect_refused(&mut b, 2, ErrorCode::Overloaded, "max_pending = 2").await;
    let pong = b.request(Frame::ping(3, b"")).await;
    assert_eq!(pong.kind(), Kind::Pong, "b's connection goes on");
}

#[tokio::test]
async fn a_wait_for_too_many_names_is_refused() {
    let broker = TestBroker::start().await;
    let mut c = broker.raw_client("c").await;
    let names: Vec<String> = (0..65).map(|i| format!("n{i}")).collect();
    let params = serde_json::json!({ "names": names }).to_string();
    c.send(wait_for(1, 0, &params)).await;
    expect_refused(&mut c, 1, ErrorCode::InvalidParams, "max_wait_names = 64").await;
    let params = serde_json::json!({ "names": &names[..64], "timeout_ms": 1 }).to_string();
    c.send(wait_for(2, 0, &params)).await;
    let err = c.expect_error(ErrorCode::Timeout).await;
    assert_eq!(err.id(), 2, "64 names are waited for");
}

#[tokio::test]
async fn timeouts_are_cut_to_the_longest_allowed() {
    let broker = TestBroker::with_config(Config {
        max_call_timeout: Duration::from_secs(60),
        ..Config::default()
    })
    .await;
    let mut worker = broker.raw_client("worker").await;
    worker.register(1, "svc").await;
    let mut caller = broker.raw_client("caller").await;
    caller.send(Frame::call(1, "svc", "m", u32::MAX, b"")).await;
    let call = worker.recv().await;
    assert_eq!(call.aux(), 60_000, "the worker is told the cut timeout");

    let params = format!(r#"{{"names":["never"],"timeout_ms":{}}}"#, u64::MAX);
    caller.send(wait_for(2, 1, &params)).await;
    let err = caller.expect_error(ErrorCode::Timeout).await;
    assert_eq!(
        err.id(),
        2,
        "the call's own timeout ends the wait: {}",
        err.string(0)
    );
}

#[tokio::test]
async fn a_max_call_timeout_below_the_default_timeout_is_refused() {
    let config = Config {
        max_call_timeout: Duration::from_secs(1),
        no_unix: true,
        ..Config::default()
    };
    match Broker::bind(config).await {
        Err(BrokerError::InvalidConfig(why)) => assert!(
            why.contains("max_call_timeout 1000 ms") && why.contains("30000 ms"),
            "{why}"
        ),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a default timeout over the maximum was accepted"),
    }
    let config = Config {
        max_call_timeout: Duration::from_secs(50 * 24 * 3600),
        no_unix: true,
        ..Config::default()
    };
    match Broker::bind(config).await {
        Err(BrokerError::InvalidConfig(why)) => {
            assert!(why.contains("4294967295 ms"), "{why}")
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a timeout a frame cannot carry was accepted"),
    }
}

#[tokio::test]
async fn names_are_limited_per_connection_and_broker_wide() {
    let broker = TestBroker::with_config(Config {
        max_names_per_connection: 2,
        max_names: 4,
        ..Config::default()
    })
    .await;
    let mut a = broker.raw_client("a").await;
    a.register(1, "a.one").await;
    a.register_shared(2, "group").await;
    a.send(Frame::register(3, "a.three", false)).await;
    expect_refused(
        &mut a,
        3,
        ErrorCode::Overloaded,
        "max_names_per_connection = 2",
    )
    .await;
    a.register(4, "a.one").await;
    a.send(Frame::unregister(5, "a.one")).await;
    assert_eq!(a.recv().await.kind(), Kind::Reply);
    a.register(6, "a.three").await;

    let mut b = broker.raw_client("b").await;
    b.register_shared(1, "group").await;
    b.register(2, "b.one").await;
    let mut c = broker.raw_client("c").await;
    c.register(1, "c.one").await;
    c.send(Frame::register(2, "c.two", false)).await;
    expect_refused(&mut c, 2, ErrorCode::Overloaded, "max_names = 4").await;
    c.register_shared(3, "group").await;
    let s = stats(&mut c, 4).await;
    assert_eq!(s["names"], 4, "{s}");
}

#[tokio::test]
async fn subscriptions_are_limited_per_connection_and_broker_wide() {
    let broker = TestBroker::with_config(Config {
        max_subscriptions_per_connection: 2,
        max_subscriptions: 3,
        ..Config::default()
    })
    .await;
    let mut a = broker.raw_client("a").await;
    a.subscribe(1, ">").await;
    a.subscribe(2, "x.*").await;
    a.send(Frame::subscribe(3, "x.y")).await;
    expect_refused(
        &mut a,
        3,
        ErrorCode::Overloaded,
        "max_subscriptions_per_connection = 2",
    )
    .await;
    a.send(Frame::unsubscribe(2)).await;
    a.subscribe(3, "x.y").await;

    let mut b = broker.raw_client("b").await;
    b.subscribe(1, "x.y").await;
    b.send(Frame::subscribe(2, "x.z")).await;
    expect_refused(&mut b, 2, ErrorCode::Overloaded, "max_subscriptions = 3").await;
    let mut p = broker.raw_client("p").await;
    let ack = p.request(Frame::publish(1, "x.y", b"1", true)).await;
    assert_eq!(
        json(&ack)["delivered"],
        3,
        "the subscriptions held still work"
    );
    let s = stats(&mut p, 2).await;
    assert_eq!(s["subscriptions"], 3, "{s}");
}

#[tokio::test]
async fn descriptions_are_limited_and_kept_as_sent() {
    let broker = TestBroker::with_config(Config {
        max_description_bytes: 1024,
        ..Config::default()
    })
    .await;
    let mut w = broker.raw_client("w").await;
    let pad = |len: usize| format!(r#"{{"methods":{{}},"pad":"{}"}}"#, "x".repeat(len - 23));
    assert_eq!(pad(1025).len(), 1025);
    let register =
        |id, body: &str| Frame::build(Kind::Register, id, 0, 0, &["svc"], body.as_bytes());
    w.send(register(1, &pad(1025))).await;
    expect_refused(
        &mut w,
        1,
        ErrorCode::InvalidParams,
        "max_description_bytes = 1024",
    )
    .await;
    let deep = format!("{{\"a\":{}}}", "[".repeat(150) + &"]".repeat(150));
    w.send(register(2, &deep)).await;
    expect_refused(&mut w, 2, ErrorCode::InvalidParams, "nested at most 100").await;
    let introspect = |id| Frame::call(id, "plexus", "introspect", 0, br#""svc""#);
    w.send(introspect(3)).await;
    w.expect_error(ErrorCode::NoSuchObject).await;

    w.send(register(4, &pad(1024))).await;
    assert_eq!(
        w.recv().await.kind(),
        Kind::Reply,
        "1024 bytes are within the limit"
    );
    let declared = r#"{ "methods": {"sub":{}, "add":{}} }"#;
    w.send(register(5, declared)).await;
    assert_eq!(w.recv().await.kind(), Kind::Reply);
    let answer = w.request(introspect(6)).await;
    let text = String::from_utf8_lossy(&answer.payload()).into_owned();
    assert!(
        text.contains(r#""description":{ "methods": {"sub":{}, "add":{}} }"#),
        "the description is the text sent: {text}"
    );
}

#[tokio::test]
async fn a_broker_answer_over_the_frame_limit_is_refused() {
    let broker = TestBroker::with_config(Config {
        max_frame: 4096,
        outbox_limit: 4096,
        ..Config::default()
    })
    .await;
    let mut w = broker.raw_client("w").await;
    for id in 1..=100 {
        w.register(id, &format!("a.rather.long.name.number.{id}"))
            .await;
    }
    w.send(Frame::call(101, "plexus", "list", 0, b"")).await;
    expect_refused(&mut w, 101, ErrorCode::Overloaded, "max_frame = 4096").await;
    let pong = w.request(Frame::ping(102, b"")).await;
    assert_eq!(pong.kind(), Kind::Pong, "the connection goes on");
}

#[tokio::test]
async fn a_subscriptions_answer_over_the_frame_limit_is_refused() {
    let broker = TestBroker::with_config(Config {
        max_frame: 4096,
        outbox_limit: 4096,
        ..Config::default()
    })
    .await;
    let mut s = broker.raw_client("s").await;
    for id in 1..=100 {
        s.subscribe(id, &format!("a.rather.long.topic.number.{id}"))
            .await;
    }
    s.send(Frame::call(101, "plexus", "subscriptions", 0, b""))
        .await;
    expect_refused(&mut s, 101, ErrorCode::Overloaded, "max_frame = 4096").await;
    let pong = s.request(Frame::ping(102, b"")).await;
    assert_eq!(pong.kind(), Kind::Pong, "the connection goes on");
}

#[tokio::test]
async fn stats_show_every_limit() {
    let broker = TestBroker::with_config(Config {
        max_pending: 7,
        max_wait_names: 5,
        ..Config::default()
    })
    .await;
    let mut c = broker.raw_client("c").await;
    let limits = stats(&mut c, 1).await["limits"].clone();
    for (key, value) in [
        ("max_frame", serde_json::json!(16 * 1024 * 1024 + 64 * 1024)),
        (
            "outbox_limit",
            serde_json::json!(2 * (16 * 1024 * 1024 + 64 * 1024)),
        ),
        ("max_connections", serde_json::json!(4096)),
        ("call_timeout_ms", serde_json::json!(30_000)),
        ("max_pending_per_connection", serde_json::json!(65_536)),
        ("max_call_timeout_ms", serde_json::json!(3_600_000)),
        ("max_pending", serde_json::json!(7)),
        ("max_wait_names", serde_json::json!(5)),
        ("max_names_per_connection", serde_json::json!(1_000)),
        ("max_names", serde_json::json!(100_000)),
        (
            "max_subscriptions_per_connection",
            serde_json::json!(10_000),
        ),
        ("max_subscriptions", serde_json::json!(1_000_000)),
        ("max_description_bytes", serde_json::json!(65_536)),
        ("slow_consumer", serde_json::json!("drop")),
        // Publish stall.
        ("publish_stall_ms", serde_json::json!(20)),
        // Contracts.
        ("max_contract_depth", serde_json::json!(32)),
        ("check_results", serde_json::json!(true)),
    ] {
        assert_eq!(limits[key], value, "{key} in {limits}");
    }
}

/// A broker whose outboxes hold 64 KiB, and a connection whose outbox is full: it subscribed to
/// `flood` and never reads, and 60 KiB events were published until one was dropped for it.
async fn full_outboxes(
    n: usize,
) -> (
    TestBroker,
    Vec<RawClient<UnixStream>>,
    RawClient<UnixStream>,
) {
    let broker = TestBroker::with_config(Config {
        max_frame: 64 * 1024,
        outbox_limit: 64 * 1024,
        ..Config::default()
    })
    .await;
    let mut stuck = Vec::new();
    for i in 0..n {
        let mut s = broker.raw_client(&format!("stuck-{i}")).await;
        s.register_shared(1, "group").await;
        s.subscribe(2, "flood").await;
        stuck.push(s);
    }
    let mut publisher = broker.raw_client("publisher").await;
    let event = vec![b'e'; 60 * 1024];
    for id in 1.. {
        let ack = publisher
            .request(Frame::publish(id, "flood", &event, true))
            .await;
        if json(&ack)["dropped"] == n {
            break;
        }
    }
    (broker, stuck, publisher)
}

/// A call bigger than the flood's events: it cannot fit where an event did not.
fn big_call(id: u64) -> Frame {
    Frame::call(id, "group", "m", 0, &vec![b' '; 61 * 1024])
}

#[tokio::test]
async fn a_stuck_group_member_passes_its_calls_to_the_others() {
    let (broker, _stuck, _publisher) = full_outboxes(1).await;
    let mut healthy = broker.raw_client("healthy").await;
    healthy.register_shared(1, "group").await;
    let mut caller = broker.raw_client("caller").await;
    for id in 1..=6 {
        caller.send(big_call(id)).await;
        let call = healthy.recv().await;
        assert_eq!(
            call.kind(),
            Kind::Call,
            "call {id} goes to the member that reads"
        );
        healthy.send(Frame::reply(call.id(), b"1")).await;
        let answer = caller.recv().await;
        assert_eq!(
            (answer.kind(), answer.id()),
            (Kind::Reply, id),
            "{}",
            answer.string(0)
        );
    }
}

#[tokio::test]
async fn a_call_is_overloaded_only_when_every_member_is_stuck() {
    let (_broker, _stuck, mut caller) = full_outboxes(2).await;
    caller.send(big_call(1000)).await;
    let err = caller.expect_error(ErrorCode::Overloaded).await;
    assert!(
        err.string(0).contains("all 2 members") && err.string(0).contains("outbox_limit = 65536"),
        "{}",
        err.string(0)
    );
}

/// A broker that disconnects slow consumers, with 16 KiB outboxes.
async fn disconnecting_broker() -> TestBroker {
    TestBroker::with_config(Config {
        max_frame: 16 * 1024,
        outbox_limit: 16 * 1024,
        slow_consumer: SlowConsumer::Disconnect,
        ..Config::default()
    })
    .await
}

/// Publishes 4 KiB events on `flood` until one is dropped (a quarter of an outbox, so that a
/// subscriber that reads always has room); returns how many were published.
async fn flood_until_dropped(p: &mut RawClient<UnixStream>) -> u64 {
    let body = vec![b'7'; 4 * 1024];
    let mut id = 0;
    loop {
        id += 1;
        let ack = p.request(Frame::publish(id, "flood", &body, true)).await;
        if json(&ack)["dropped"] != 0 {
            return id;
        }
    }
}

#[tokio::test]
async fn a_slow_consumer_is_told_and_disconnected_when_the_policy_says_so() {
    let broker = disconnecting_broker().await;
    let mut slow = broker.raw_client("slow").await;
    slow.register(1, "slow.svc").await;
    slow.subscribe(2, "flood").await;
    let mut fast = broker.raw_client("fast").await;
    fast.subscribe(1, "flood").await;
    let reader = tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            let ev = fast.recv().await;
            assert_eq!(ev.aux(), 0, "the fast subscriber loses nothing");
            n += 1;
            if ev.payload().as_ref() == b"last" {
                return n;
            }
        }
    });
    let mut p = broker.raw_client("p").await;
    let published = flood_until_dropped(&mut p).await;

    let mut other = broker.raw_client("other").await;
    other.register(1, "slow.svc").await;
    let ack = p
        .request(Frame::publish(published + 1, "flood", b"last", true))
        .await;
    assert_eq!(
        (
            json(&ack)["delivered"].as_u64(),
            json(&ack)["dropped"].as_u64()
        ),
        (Some(1), Some(0)),
        "the slow consumer is gone"
    );
    assert_eq!(reader.await.expect("fast reader"), published + 1);

    let err = loop {
        let f = slow.recv().await;
        if f.kind() != Kind::Event {
            break f;
        }
    };
    assert_eq!(
        (err.kind(), err.id(), err.error_code()),
        (Kind::Error, 0, ErrorCode::Overloaded)
    );
    let msg = err.string(0);
    assert!(
        msg.contains("slow consumer")
            && msg.contains("outbox_limit = 16384")
            && msg.contains("slow_consumer = \"disconnect\""),
        "{msg}"
    );
    slow.expect_closed().await;
    let s = stats(&mut p, 1000).await;
    assert_eq!(s["slow_consumers_disconnected"], 1, "{s}");
}

#[tokio::test]
async fn a_slow_ndjson_consumer_is_disconnected_too() {
    let broker = disconnecting_broker().await;
    let stream = UnixStream::connect(&broker.path).await.expect("connect");
    let (read, mut write) = stream.into_split();
    write
        .write_all(b"{\"op\":\"subscribe\",\"id\":1,\"pattern\":\"flood\"}\n")
        .await
        .expect("write");
    let mut lines = BufReader::new(read).lines();
    let confirmed = tokio::time::timeout(plexus_test_support::WAIT, lines.next_line())
        .await
        .expect("in time")
        .expect("read");
    assert!(confirmed.is_some_and(|l| l.contains("reply")));
    let mut p = broker.raw_client("p").await;
    flood_until_dropped(&mut p).await;
    let last = tokio::time::timeout(plexus_test_support::WAIT, async {
        let mut last = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            last = line;
        }
        last
    })
    .await
    .expect("the broker closes the connection in time");
    assert!(
        last.contains("overloaded") && last.contains("slow consumer"),
        "the last line says why: {last}"
    );
}
