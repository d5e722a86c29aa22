//! Trust (issue 11): nothing a client sends can panic the router or leave a dead connection
//! behind, and what the broker says about calls can be believed.

use plexus_proto::{ErrorCode, Frame, Kind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use plexus_test_support::{TestBroker, json};

/// JSON nested `depth` arrays deep: `[[[…]]]`.
fn nested(depth: usize) -> Vec<u8> {
    let mut v = vec![b'['; depth];
    v.extend(std::iter::repeat_n(b']', depth));
    v
}

#[tokio::test]
async fn deeply_nested_payloads_seen_by_the_monitor_are_routed_and_shown_as_strings() {
    let broker = TestBroker::start().await;
    let mut monitor = broker.raw_client("monitor").await;
    monitor.subscribe(1, "plexus.monitor.>").await;
    let mut worker = broker.raw_client("worker").await;
    worker.register(1, "deep").await;
    worker.subscribe(2, "deep.news").await;
    let mut caller = broker.raw_client("caller").await;
    let deep = nested(200);
    let text = String::from_utf8_lossy(&deep).into_owned();

    caller
        .send(Frame::call(1, "deep", "get", 5000, &deep))
        .await;
    let call = worker.recv().await;
    assert_eq!(
        call.payload(),
        &deep[..],
        "the params are forwarded as sent"
    );
    worker.send(Frame::reply(call.id(), &deep)).await;
    let reply = caller.recv().await;
    assert_eq!((reply.kind(), reply.id()), (Kind::Reply, 1), "{reply:?}");
    assert_eq!(
        reply.payload(),
        &deep[..],
        "the answer is forwarded as sent"
    );
    let ack = caller
        .request(Frame::publish(2, "deep.news", &deep, true))
        .await;
    assert_eq!(json(&ack)["delivered"], 1);
    assert_eq!(worker.recv().await.payload(), &deep[..]);
    assert_eq!(
        worker.request(Frame::ping(3, b"")).await.kind(),
        Kind::Pong,
        "the worker's connection is still served"
    );

    for (topic, field) in [
        ("plexus.monitor.call", "params"),
        ("plexus.monitor.reply", "result"),
        ("plexus.monitor.event", "data"),
    ] {
        let record = monitor.recv().await;
        assert_eq!(record.string(0), topic);
        let record = json(&record);
        assert_eq!(record["bytes"], 400);
        assert_eq!(
            record[field], text,
            "a payload nested too deep to embed is shown as a string"
        );
    }
}

#[tokio::test]
async fn a_worker_cannot_answer_with_an_error_only_the_broker_sends() {
    let broker = TestBroker::start().await;
    let mut worker = broker.raw_client("worker").await;
    worker.register(1, "svc").await;
    let mut caller = broker.raw_client("caller").await;
    let broker_only = [
        ErrorCode::Timeout,
        ErrorCode::WorkerGone,
        ErrorCode::NameTaken,
        ErrorCode::FrameTooLarge,
        ErrorCode::BadFrame,
        ErrorCode::UnsupportedVersion,
        ErrorCode::ShuttingDown,
        // Contracts: only the broker's check says a result breaks its contract.
        ErrorCode::InvalidResult,
        // Cluster.
        ErrorCode::Unavailable,
    ];
    for (id, code) in (1u64..).zip(ErrorCode::ALL) {
        caller.send(Frame::call(id, "svc", "m", 5000, b"")).await;
        let call = worker.recv().await;
        worker
            .send(Frame::error(
                call.id(),
                code,
                "said by the worker",
                br#"{"x":1}"#,
            ))
            .await;
        let answer = caller.recv().await;
        assert_eq!((answer.kind(), answer.id()), (Kind::Error, id));
        assert_eq!(json(&answer)["x"], 1, "the data is kept");
        if broker_only.contains(&code) {
            assert_eq!(answer.error_code(), ErrorCode::Internal, "{code}");
            let msg = answer.string(0);
            assert!(
                msg.contains(&format!("error code {code}")) && msg.contains("said by the worker"),
                "{msg}"
            );
        } else {
            assert_eq!(answer.error_code(), code, "{code} is passed on");
            assert_eq!(answer.string(0), "said by the worker");
        }
    }
}

/// Writes an ipc-broker packet: a u32 big-endian length, then JSON.
async fn ipc_send(stream: &mut UnixStream, message: &str) {
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    stream.write_all(&len.to_be_bytes()).await.expect("write");
    stream.write_all(message.as_bytes()).await.expect("write");
}

#[tokio::test]
async fn a_call_a_dialect_cannot_carry_is_answered_frame_too_large_by_the_broker() {
    let broker = TestBroker::start().await;
    let mut ipc = UnixStream::connect(&broker.path).await.expect("connect");
    ipc_send(&mut ipc, r#"{"RegisterObject":{"object_name":"small"}}"#).await;
    let mut len = [0u8; 4];
    ipc.read_exact(&mut len).await.expect("an answer");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    ipc.read_exact(&mut body).await.expect("an answer");
    assert!(String::from_utf8_lossy(&body).contains("Registered"));

    let mut caller = broker.raw_client("caller").await;
    let big = format!("\"{}\"", "x".repeat(70_000));
    caller
        .send(Frame::call(1, "small", "m", 5000, big.as_bytes()))
        .await;
    let err = caller.expect_error(ErrorCode::FrameTooLarge).await;
    assert!(err.string(0).contains("ipc-broker"), "{}", err.string(0));
}

#[tokio::test]
async fn a_reused_call_id_is_refused_and_the_open_call_goes_on() {
    let broker = TestBroker::start().await;
    let mut worker = broker.raw_client("worker").await;
    worker.register(1, "svc").await;
    let mut caller = broker.raw_client("caller").await;
    caller.send(Frame::call(5, "svc", "first", 5000, b"")).await;
    let call = worker.recv().await;
    assert_eq!(call.string(1), "first");

    caller.send(Frame::call(5, "svc", "again", 5000, b"")).await;
    let err = caller.expect_error(ErrorCode::InvalidParams).await;
    assert_eq!(err.id(), 5);
    assert!(
        err.string(0).contains("the open request goes on"),
        "{}",
        err.string(0)
    );
    caller
        .send(Frame::call(5, "plexus", "wait_for", 0, br#"["absent"]"#))
        .await;
    assert_eq!(caller.expect_error(ErrorCode::InvalidParams).await.id(), 5);
    let pong = worker.request(Frame::ping(2, b"")).await;
    assert_eq!(pong.kind(), Kind::Pong, "the worker got no second call");

    worker.send(Frame::reply(call.id(), br#""done""#)).await;
    let reply = caller.recv().await;
    assert_eq!((reply.kind(), reply.id()), (Kind::Reply, 5));
    assert_eq!(json(&reply), "done", "the open call is answered as before");
}

#[tokio::test]
async fn monitor_records_are_not_counted_as_events() {
    let broker = TestBroker::start().await;
    let mut monitor = broker.raw_client("monitor").await;
    monitor.subscribe(1, "plexus.monitor.>").await;
    let mut subscriber = broker.raw_client("subscriber").await;
    subscriber.subscribe(1, "news").await;
    let mut publisher = broker.raw_client("publisher").await;
    let ack = publisher
        .request(Frame::publish(1, "news", b"1", true))
        .await;
    assert_eq!(json(&ack)["delivered"], 1);
    assert_eq!(subscriber.recv().await.kind(), Kind::Event);
    let record = monitor.recv().await;
    assert_eq!(record.string(0), "plexus.monitor.event");

    let stats = json(
        &publisher
            .request(Frame::call(2, "plexus", "stats", 0, b""))
            .await,
    );
    assert_eq!(stats["events_published"], 1);
    assert_eq!(stats["events_delivered"], 1, "{stats}");
    assert_eq!(stats["monitor_delivered"], 1, "{stats}");
}
