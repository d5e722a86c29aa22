//! Calls: round trips, concurrency, queue groups, cancellation, and a connection in every role.

use std::collections::HashMap;

use plexus_proto::{ErrorCode, Frame, Kind};

use plexus_test_support::{TestBroker, json};

#[tokio::test]
async fn call_round_trip_over_unix_and_tcp() {
    let broker = TestBroker::start().await;
    let mut worker = broker.raw_client("calc").await;
    worker.register(1, "math").await;
    let mut unix_caller = broker.raw_client("caller").await;
    let mut tcp_caller = broker.raw_tcp_client("tcp-caller").await;

    for (caller_id, params) in [(7u64, r#"{"a":10,"b":32}"#), (8, r#"{"a":1,"b":2}"#)] {
        unix_caller
            .send(Frame::call(
                caller_id,
                "math",
                "add",
                5000,
                params.as_bytes(),
            ))
            .await;
        let call = worker.recv().await;
        assert_eq!(call.kind(), Kind::Call);
        assert_eq!((call.string(0), call.string(1)), ("math", "add"));
        assert_eq!(
            call.payload(),
            params.as_bytes(),
            "params forwarded as the same bytes"
        );
        assert_eq!(call.aux(), 5000, "the worker learns the timeout");
        let p = json(&call);
        let sum = p["a"].as_i64().unwrap_or(0) + p["b"].as_i64().unwrap_or(0);
        worker
            .send(Frame::reply(
                call.id(),
                format!(r#"{{"sum":{sum}}}"#).as_bytes(),
            ))
            .await;
        let reply = unix_caller.recv().await;
        assert_eq!((reply.kind(), reply.id()), (Kind::Reply, caller_id));
        assert_eq!(json(&reply)["sum"], sum);
    }

    tcp_caller
        .send(Frame::call(1, "math", "add", 0, br#"{"a":40,"b":2}"#))
        .await;
    let call = worker.recv().await;
    assert_eq!(call.aux(), 30_000, "no timeout given: the broker's default");
    worker.send(Frame::reply(call.id(), br#"{"sum":42}"#)).await;
    let reply = tcp_caller.recv().await;
    assert_eq!(json(&reply)["sum"], 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_calls_from_ten_connections_reach_their_callers() {
    let broker = TestBroker::start().await;
    let mut w1 = broker.raw_client("w1").await;
    w1.register_shared(1, "echo").await;
    let mut w2 = broker.raw_client("w2").await;
    w2.register_shared(1, "echo").await;
    let workers: Vec<_> = [w1, w2]
        .into_iter()
        .map(|mut w| {
            tokio::spawn(async move {
                let mut served = 0usize;
                while let Ok(Some(call)) = w.try_recv(std::time::Duration::from_secs(2)).await {
                    assert_eq!(call.kind(), Kind::Call);
                    w.send(Frame::reply(call.id(), &call.payload())).await;
                    served += 1;
                }
                served
            })
        })
        .collect();

    let mut callers = Vec::new();
    for c in 0..10u64 {
        let mut caller = broker.raw_client(&format!("caller-{c}")).await;
        callers.push(tokio::spawn(async move {
            // Every caller uses the same ids 1..=100: the broker must keep them apart.
            for id in 1..=100u64 {
                let params = format!(r#"{{"caller":{c},"id":{id}}}"#);
                caller
                    .send(Frame::call(id, "echo", "same", 10_000, params.as_bytes()))
                    .await;
            }
            let mut seen = HashMap::new();
            for _ in 0..100 {
                let reply = caller.recv().await;
                assert_eq!(reply.kind(), Kind::Reply, "{reply:?}");
                let body = json(&reply);
                assert_eq!(body["caller"], c, "reply reached the wrong caller");
                assert_eq!(body["id"], reply.id(), "reply matched to the wrong call");
                seen.insert(reply.id(), ());
            }
            seen.len()
        }));
    }
    for caller in callers {
        assert_eq!(caller.await.expect("caller task"), 100);
    }
    let mut served = Vec::new();
    for w in workers {
        served.push(w.await.expect("worker task"));
    }
    assert_eq!(served.iter().sum::<usize>(), 1000);
    assert!(
        served.iter().all(|s| *s > 0),
        "both workers served calls: {served:?}"
    );
}

#[tokio::test]
async fn shared_registration_spreads_calls_round_robin() {
    let broker = TestBroker::start().await;
    let mut members = Vec::new();
    for i in 0..3 {
        let mut m = broker.raw_client(&format!("member-{i}")).await;
        m.register_shared(1, "jobs").await;
        members.push(m);
    }
    let mut caller = broker.raw_client("caller").await;
    for round in 0..2 {
        for (i, m) in members.iter_mut().enumerate() {
            let id = (round * 3 + i + 1) as u64;
            caller
                .send(Frame::call(id, "jobs", "run", 5000, b"null"))
                .await;
            let call = m.recv().await;
            assert_eq!(call.kind(), Kind::Call, "member {i} gets call {id}");
            m.send(Frame::reply(call.id(), format!("{i}").as_bytes()))
                .await;
            let reply = caller.recv().await;
            assert_eq!(json(&reply), i);
        }
    }
    let list = caller
        .request(Frame::call(99, "plexus", "list", 0, b""))
        .await;
    let names = json(&list);
    let jobs = &names.as_array().expect("list is an array")[0];
    assert_eq!(jobs["name"], "jobs");
    assert_eq!(jobs["kind"], "shared");
    assert_eq!(jobs["owners"].as_array().map(Vec::len), Some(3));
    assert_eq!(jobs["calls_served"], 6);
}

#[tokio::test]
async fn one_connection_serves_calls_and_subscribes_at_once() {
    let broker = TestBroker::start().await;
    let mut a = broker.raw_client("a").await;
    let mut b = broker.raw_client("b").await;
    a.register(1, "alpha").await;
    a.subscribe(2, "news.>").await;
    b.register(1, "beta").await;

    // a calls beta with id 5; b calls alpha, and b's routed call to a may carry any id, even 5.
    a.send(Frame::call(5, "beta", "hi", 5000, br#""from a""#))
        .await;
    b.send(Frame::call(5, "alpha", "hi", 5000, br#""from b""#))
        .await;
    b.send(Frame::publish(0, "news.today", br#""headline""#, false))
        .await;

    let mut got_call = None;
    let mut got_event = None;
    let mut got_reply = None;
    let call_to_b = b.recv().await;
    assert_eq!(call_to_b.kind(), Kind::Call);
    b.send(Frame::reply(call_to_b.id(), br#""b answers""#))
        .await;
    for _ in 0..3 {
        let f = a.recv().await;
        match f.kind() {
            Kind::Call => got_call = Some(f),
            Kind::Event => got_event = Some(f),
            Kind::Reply => got_reply = Some(f),
            other => panic!("unexpected {other:?}: {f:?}"),
        }
    }
    let call = got_call.expect("a receives b's call");
    assert_eq!(json(&call), "from b");
    let event = got_event.expect("a receives the event");
    assert_eq!((event.id(), event.string(0)), (2, "news.today"));
    let reply = got_reply.expect("a receives the answer to its own call");
    assert_eq!(
        (reply.id(), json(&reply)),
        (5, serde_json::json!("b answers"))
    );

    a.send(Frame::reply(call.id(), br#""a answers""#)).await;
    let reply = b.recv().await;
    assert_eq!(
        (reply.kind(), reply.id(), json(&reply)),
        (Kind::Reply, 5, serde_json::json!("a answers"))
    );
}

#[tokio::test]
async fn cancel_and_timeout_reach_the_worker() {
    let broker = TestBroker::start().await;
    let mut worker = broker.raw_client("w").await;
    worker.register(1, "slow").await;
    let mut caller = broker.raw_client("c").await;

    caller
        .send(Frame::call(1, "slow", "wait", 60_000, b""))
        .await;
    let call = worker.recv().await;
    caller.send(Frame::cancel(1)).await;
    let cancel = worker.recv().await;
    assert_eq!((cancel.kind(), cancel.id()), (Kind::Cancel, call.id()));
    worker.send(Frame::reply(call.id(), b"1")).await;

    caller.send(Frame::call(2, "slow", "wait", 50, b"")).await;
    let call = worker.recv().await;
    let err = caller.expect_error(ErrorCode::Timeout).await;
    assert_eq!(err.id(), 2);
    let cancel = worker.recv().await;
    assert_eq!((cancel.kind(), cancel.id()), (Kind::Cancel, call.id()));
    // The late reply is dropped, not delivered to the caller.
    worker.send(Frame::reply(call.id(), b"2")).await;
    assert_eq!(
        worker.request(Frame::ping(9, b"")).await.kind(),
        Kind::Pong,
        "the late reply was processed"
    );
    let stats = caller
        .request(Frame::call(3, "plexus", "stats", 0, b""))
        .await;
    assert_eq!(
        json(&stats)["late_replies"],
        2,
        "both answers to forgotten calls were dropped"
    );
}

#[tokio::test]
async fn a_reply_is_accepted_only_from_the_worker_and_only_once() {
    let broker = TestBroker::start().await;
    let mut worker = broker.raw_client("w").await;
    worker.register(1, "obj").await;
    let mut intruder = broker.raw_client("intruder").await;
    let mut caller = broker.raw_client("c").await;

    caller.send(Frame::call(1, "obj", "m", 5000, b"")).await;
    let call = worker.recv().await;
    intruder.send(Frame::reply(call.id(), br#""forged""#)).await;
    intruder.send(Frame::ping(9, b"")).await;
    assert_eq!(
        intruder.recv().await.kind(),
        Kind::Pong,
        "the forged reply was processed first"
    );
    worker.send(Frame::reply(call.id(), br#""real""#)).await;
    worker.send(Frame::reply(call.id(), br#""again""#)).await;
    assert_eq!(worker.request(Frame::ping(9, b"")).await.kind(), Kind::Pong);
    let reply = caller.recv().await;
    assert_eq!(json(&reply), "real");
    let stats = caller
        .request(Frame::call(2, "plexus", "stats", 0, b""))
        .await;
    assert_eq!(json(&stats)["late_replies"], 2);
}
