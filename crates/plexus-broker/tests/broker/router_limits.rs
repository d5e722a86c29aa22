//! The router's limits (issue 11): each refuses with a message naming the limit and its value,
//! and leaves everything else as it was.

use plexus_broker::{Broker, BrokerError, Config};
use plexus_proto::{Frame, Kind};

use plexus_test_support::{TestBroker, json};

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
            why.contains("outbox_limit 1048576") && why.contains("max_frame 16777216"),
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
