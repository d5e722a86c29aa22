//! Every error code the broker itself produces, and bad input that must not disturb others.

use std::time::Instant;

use plexus_broker::Config;
use plexus_proto::{ErrorCode, Frame, HEADER_LEN, Kind};
use tokio::net::UnixStream;

use plexus_test_support::{RawClient, TestBroker, WAIT, json};

#[tokio::test]
async fn no_such_object_is_answered_at_once_with_data() {
    let broker = TestBroker::start().await;
    let mut c = broker.raw_client("c").await;
    c.send(Frame::call(1, "nobody", "m", 60_000, b"")).await;
    let started = Instant::now();
    let err = c.expect_error(ErrorCode::NoSuchObject).await;
    assert!(
        started.elapsed() < WAIT,
        "answered without waiting for the call's timeout"
    );
    assert!(err.string(0).contains("nobody"), "{}", err.string(0));
    assert_eq!(json(&err)["object"], "nobody");
}

#[tokio::test]
async fn no_such_method_on_the_broker_object() {
    let broker = TestBroker::start().await;
    let mut c = broker.raw_client("c").await;
    c.send(Frame::call(1, "plexus", "explode", 0, b"")).await;
    let err = c.expect_error(ErrorCode::NoSuchMethod).await;
    assert!(
        err.string(0).contains("explode") && err.string(0).contains("wait_for"),
        "{}",
        err.string(0)
    );
}

#[tokio::test]
async fn a_call_to_an_undeclared_method_is_answered_by_the_broker_listing_the_declared_ones() {
    let broker = TestBroker::start().await;
    let register = |id, name: &str, body: &str| {
        Frame::build(Kind::Register, id, 0, 0, &[name], body.as_bytes())
    };
    let mut w = broker.raw_client("w").await;
    let r = w
        .request(register(1, "calc", r#"{"methods":{"mul":{},"add":{}}}"#))
        .await;
    assert_eq!(r.kind(), Kind::Reply);
    w.register(2, "free").await;
    let mut c = broker.raw_client("c").await;

    c.send(Frame::call(1, "calc", "div", 0, b"")).await;
    let err = c.expect_error(ErrorCode::NoSuchMethod).await;
    assert_eq!(err.id(), 1);
    assert!(
        err.string(0).contains("'div'") && err.string(0).contains("it declared add, mul"),
        "{}",
        err.string(0)
    );
    assert_eq!(json(&err)["methods"], serde_json::json!(["add", "mul"]));
    assert_eq!(json(&err)["object"], "calc");

    c.send(Frame::call(2, "calc", "add", 0, b"")).await;
    let call = w.recv().await;
    assert_eq!(
        (call.kind(), call.string(1)),
        (Kind::Call, "add"),
        "the undeclared call never reached the worker; a declared one does"
    );
    w.send(Frame::reply(call.id(), b"3")).await;
    assert_eq!(c.recv().await.id(), 2);

    c.send(Frame::call(3, "free", "anything", 0, b"")).await;
    let call = w.recv().await;
    assert_eq!(
        call.string(1),
        "anything",
        "an object that declared no methods gets every call"
    );

    let r = w
        .request(register(3, "calc", r#"{"methods":{"div":{}}}"#))
        .await;
    assert_eq!(r.kind(), Kind::Reply, "declared again, with another method");
    c.send(Frame::call(4, "calc", "add", 0, b"")).await;
    let err = c.expect_error(ErrorCode::NoSuchMethod).await;
    assert!(
        err.string(0).contains("it declared div"),
        "{}",
        err.string(0)
    );
    c.send(Frame::call(5, "calc", "div", 0, b"")).await;
    assert_eq!(w.recv().await.string(1), "div");
}

#[tokio::test]
async fn worker_errors_are_forwarded_with_code_message_and_data() {
    let broker = TestBroker::start().await;
    let mut w = broker.raw_client("w").await;
    w.register(1, "obj").await;
    let mut c = broker.raw_client("c").await;
    c.send(Frame::call(4, "obj", "crash", 0, b"")).await;
    let call = w.recv().await;
    w.send(Frame::error(
        call.id(),
        ErrorCode::Internal,
        "handler panicked",
        br#"{"trace":"x"}"#,
    ))
    .await;
    let err = c.expect_error(ErrorCode::Internal).await;
    assert_eq!((err.id(), err.string(0)), (4, "handler panicked"));
    assert_eq!(json(&err)["trace"], "x");
}

#[tokio::test]
async fn worker_killed_with_100_pending_calls_answers_each_caller_worker_gone() {
    let broker = TestBroker::start().await;
    let mut w = broker.raw_client("doomed").await;
    w.register(1, "doomed").await;
    let mut callers = Vec::new();
    for i in 0..4 {
        callers.push(broker.raw_client(&format!("c{i}")).await);
    }
    for (i, c) in callers.iter_mut().enumerate() {
        for id in 0..25u64 {
            c.send(Frame::call(
                id,
                "doomed",
                "m",
                60_000,
                format!("{i}").as_bytes(),
            ))
            .await;
        }
    }
    for _ in 0..100 {
        assert_eq!(w.recv().await.kind(), Kind::Call);
    }
    drop(w);
    for c in &mut callers {
        let mut ids = Vec::new();
        for _ in 0..25 {
            let err = c.expect_error(ErrorCode::WorkerGone).await;
            assert!(
                err.string(0).contains("doomed"),
                "message names the worker: {}",
                err.string(0)
            );
            ids.push(err.id());
        }
        ids.sort();
        assert_eq!(ids, (0..25).collect::<Vec<_>>());
    }
    let stats = callers[0]
        .request(Frame::call(99, "plexus", "stats", 0, b""))
        .await;
    assert_eq!(json(&stats)["pending_calls"], 0);
    assert_eq!(json(&stats)["names"], 0, "the dead worker's name is gone");
}

#[tokio::test]
async fn name_taken_names_the_owner() {
    let broker = TestBroker::start().await;
    let mut owner = broker.raw_client("calc-worker").await;
    owner.register(1, "math").await;
    let mut other = broker.raw_client("other").await;
    let err = other.request(Frame::register(1, "math", false)).await;
    assert_eq!(err.error_code(), ErrorCode::NameTaken);
    assert!(
        err.string(0).contains("calc-worker") && err.string(0).contains("pid"),
        "{}",
        err.string(0)
    );
    assert!(
        !err.string(0).contains("--shared"),
        "an exclusive name taken exclusively has nothing to join: {}",
        err.string(0)
    );
    let err = other.request(Frame::register(2, "math", true)).await;
    assert_eq!(
        err.error_code(),
        ErrorCode::NameTaken,
        "an exclusive name cannot be joined as a group"
    );
    assert!(
        err.string(0).contains("not a queue group") && err.string(0).contains("--shared"),
        "{}",
        err.string(0)
    );
    other.register_shared(3, "group").await;
    let err = owner.request(Frame::register(4, "group", false)).await;
    assert_eq!(
        err.error_code(),
        ErrorCode::NameTaken,
        "a group cannot be taken exclusively"
    );
    assert!(
        err.string(0).contains("is a queue group")
            && err
                .string(0)
                .contains("join it as a queue group member with --shared")
            && err.string(0).contains("Client::serve_shared"),
        "{}",
        err.string(0)
    );
}

#[tokio::test]
async fn permission_denied_for_the_broker_name_and_foreign_names() {
    let broker = TestBroker::start().await;
    let mut a = broker.raw_client("a").await;
    let err = a.request(Frame::register(1, "plexus", false)).await;
    assert_eq!(err.error_code(), ErrorCode::PermissionDenied);
    a.register(2, "mine").await;
    let mut b = broker.raw_client("b").await;
    let err = b.request(Frame::unregister(1, "mine")).await;
    assert_eq!(err.error_code(), ErrorCode::PermissionDenied);
    let err = b.request(Frame::unregister(2, "never")).await;
    assert_eq!(err.error_code(), ErrorCode::NoSuchObject);
    let ok = a.request(Frame::unregister(3, "mine")).await;
    assert_eq!(ok.kind(), Kind::Reply);
    b.register(3, "mine").await;
}

#[tokio::test]
async fn invalid_params_for_bad_names_topics_patterns_and_reused_ids() {
    let broker = TestBroker::start().await;
    let mut c = broker.raw_client("c").await;
    for frame in [
        Frame::register(1, "bad name", false),
        Frame::register(2, "", false),
        Frame::subscribe(3, "a.>.b"),
        Frame::subscribe(4, "a..b"),
        Frame::publish(5, "a.*", b"1", false),
        Frame::call(6, "plexus", "wait_for", 0, b"42"),
        Frame::call(7, "plexus", "wait_for", 0, br#"{"names":["bad name"]}"#),
    ] {
        let id = frame.id();
        let err = c.request(frame).await;
        assert_eq!(
            (err.id(), err.error_code()),
            (id, ErrorCode::InvalidParams),
            "{}",
            err.string(0)
        );
        assert!(!err.string(0).is_empty());
    }
    let mut w = broker.raw_client("w").await;
    w.register(1, "obj").await;
    c.send(Frame::call(8, "obj", "m", 0, b"")).await;
    let _ = w.recv().await;
    let err = c.request(Frame::call(8, "obj", "m", 0, b"")).await;
    assert_eq!(
        err.error_code(),
        ErrorCode::InvalidParams,
        "id 8 is still open"
    );
    c.subscribe(9, "x").await;
    let err = c.request(Frame::subscribe(9, "y")).await;
    assert_eq!(err.error_code(), ErrorCode::InvalidParams);
}

#[tokio::test]
async fn timeout_of_a_call_and_of_wait_for() {
    let broker = TestBroker::start().await;
    let mut w = broker.raw_client("w").await;
    w.register(1, "silent").await;
    let mut c = broker.raw_client("c").await;
    c.send(Frame::call(1, "silent", "m", 30, b"")).await;
    let err = c.expect_error(ErrorCode::Timeout).await;
    assert!(err.string(0).contains("30 ms"), "{}", err.string(0));
    c.send(Frame::call(
        2,
        "plexus",
        "wait_for",
        0,
        br#"{"names":["silent","later"],"timeout_ms":30}"#,
    ))
    .await;
    let err = c.expect_error(ErrorCode::Timeout).await;
    assert_eq!(json(&err)["missing"], serde_json::json!(["later"]));
}

#[tokio::test]
async fn frame_too_large_closes_only_that_connection() {
    let config = Config {
        max_frame: 4096,
        ..Config::default()
    };
    let broker = TestBroker::with_config(config).await;
    let mut bystander = broker.raw_client("bystander").await;
    let mut big = RawClient::raw(UnixStream::connect(&broker.path).await.expect("connect"));
    big.send(Frame::hello("big")).await;
    let welcome = big.recv().await;
    assert_eq!(welcome.aux(), 4096, "the limit is announced");
    // Only the header goes out: the broker refuses from the header alone.
    let frame = Frame::call(1, "x", "y", 0, &vec![b' '; 10_000]).to_bytes();
    big.send_bytes(&frame[..HEADER_LEN]).await;
    let err = big.expect_error(ErrorCode::FrameTooLarge).await;
    assert!(err.string(0).contains("4096"), "{}", err.string(0));
    big.expect_closed().await;
    let pong = bystander.request(Frame::ping(1, b"still here")).await;
    assert_eq!(pong.payload(), &b"still here"[..]);
}

#[tokio::test]
async fn garbage_bytes_close_that_connection_and_nothing_else() {
    let broker = TestBroker::start().await;
    let mut w = broker.raw_client("w").await;
    w.register(1, "obj").await;
    let mut c = broker.raw_client("c").await;
    c.send(Frame::call(1, "obj", "m", 60_000, b"")).await;
    let pending = w.recv().await;

    let mut before_hello =
        RawClient::raw(UnixStream::connect(&broker.path).await.expect("connect"));
    before_hello
        .send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    before_hello.expect_error(ErrorCode::BadFrame).await;
    before_hello.expect_closed().await;

    let mut after_hello = broker.raw_client("garbage").await;
    after_hello.send_bytes(&[0xde; 64]).await;
    let err = after_hello.expect_error(ErrorCode::BadFrame).await;
    assert!(err.string(0).contains("magic"), "{}", err.string(0));
    after_hello.expect_closed().await;

    let mut wrong_kind = broker.raw_client("wrong-kind").await;
    let err = wrong_kind.request(Frame::event(5, 0, "a", b"")).await;
    assert_eq!(
        err.error_code(),
        ErrorCode::BadFrame,
        "a valid frame of the wrong kind is refused…"
    );
    assert_eq!(
        wrong_kind.request(Frame::ping(6, b"")).await.kind(),
        Kind::Pong,
        "…and the connection kept"
    );

    w.send(Frame::reply(pending.id(), b"true")).await;
    let reply = c.recv().await;
    assert_eq!(
        (reply.kind(), json(&reply)),
        (Kind::Reply, serde_json::json!(true)),
        "others unaffected"
    );
}

#[tokio::test]
async fn unsupported_version_and_missing_hello() {
    let broker = TestBroker::start().await;
    let mut future = RawClient::raw(UnixStream::connect(&broker.path).await.expect("connect"));
    let mut hello = Frame::hello("from-the-future").to_bytes().to_vec();
    hello[2] = 2;
    future.send_bytes(&hello).await;
    let err = future.expect_error(ErrorCode::UnsupportedVersion).await;
    assert!(err.string(0).contains("version 2"), "{}", err.string(0));
    future.expect_closed().await;

    let mut rude = RawClient::raw(UnixStream::connect(&broker.path).await.expect("connect"));
    rude.send(Frame::ping(1, b"")).await;
    let err = rude.expect_error(ErrorCode::BadFrame).await;
    assert!(err.string(0).contains("hello"), "{}", err.string(0));
    rude.expect_closed().await;
}

#[tokio::test]
async fn overloaded_when_a_worker_does_not_read_or_too_many_calls_are_open() {
    let config = Config {
        outbox_limit: 64 * 1024,
        max_frame: 64 * 1024,
        max_pending_per_connection: 200,
        ..Config::default()
    };
    let broker = TestBroker::with_config(config).await;
    let mut stuck = broker.raw_client("stuck").await;
    stuck.register(1, "stuck").await;
    let mut c = broker.raw_client("c").await;
    let params = vec![b' '; 60 * 1024];
    for id in 0..150u64 {
        c.send(Frame::call(id, "stuck", "m", 60_000, &params)).await;
    }
    let err = c.expect_error(ErrorCode::Overloaded).await;
    assert!(
        err.string(0).contains("not keeping up"),
        "{}",
        err.string(0)
    );

    let mut w = broker.raw_client("w").await;
    w.register(1, "fine").await;
    let mut greedy = broker.raw_client("greedy").await;
    for id in 0..201u64 {
        greedy.send(Frame::call(id, "fine", "m", 60_000, b"")).await;
    }
    let err = greedy.expect_error(ErrorCode::Overloaded).await;
    assert_eq!(err.id(), 200, "the 201st open call is refused");
    assert!(err.string(0).contains("limit"), "{}", err.string(0));
}
