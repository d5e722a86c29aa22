//! Trust (issue 11): nothing a client sends can panic the router or leave a dead connection
//! behind, and what the broker says about calls can be believed.

use plexus_proto::{Frame, Kind};

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
