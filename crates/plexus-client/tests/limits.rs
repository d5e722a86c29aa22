//! The client's limits on what it takes from the broker, against a real broker (and a broker
//! that breaks the rules) on a temporary socket.

#[allow(dead_code, reason = "these tests do not restart the broker")]
mod in_process_broker;

use std::future::IntoFuture;
use std::sync::Arc;

use in_process_broker::{TestBroker, WAIT, addr};
use plexus_broker::Config;
use plexus_client::{CallContext, Client, ErrorCode};
use serde_json::Value;
use tokio::sync::Notify;

#[tokio::test]
async fn a_call_beyond_max_concurrent_calls_is_answered_overloaded_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let _broker = TestBroker::start(&dir, Config::default()).await;
    let worker = Client::builder()
        .address(addr(&dir))
        .max_concurrent_calls(1)
        .connect()
        .await
        .expect("worker");
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    {
        let (started, release) = (started.clone(), release.clone());
        worker
            .serve_fn(
                "one-at-a-time",
                move |method, _params, _ctx: CallContext| {
                    let (started, release) = (started.clone(), release.clone());
                    async move {
                        if method == "hold" {
                            started.notify_one();
                            release.notified().await;
                        }
                        Ok(Value::String(method))
                    }
                },
            )
            .await
            .expect("serve");
    }
    let caller = in_process_broker::client(&dir).await;
    let held = tokio::spawn({
        let caller = caller.clone();
        async move { caller.call::<_, Value>("one-at-a-time", "hold", &()).await }
    });
    tokio::time::timeout(WAIT, started.notified())
        .await
        .expect("the first call runs");

    let err = tokio::time::timeout(
        WAIT,
        caller
            .call::<_, Value>("one-at-a-time", "quick", &())
            .into_future(),
    )
    .await
    .expect("answered without waiting for the running call")
    .expect_err("no place free");
    assert_eq!(err.code(), ErrorCode::Overloaded, "{err}");

    release.notify_one();
    let held = tokio::time::timeout(WAIT, held)
        .await
        .expect("answered")
        .expect("task");
    assert_eq!(held.expect("the held call succeeds"), "hold");
    let quick: Value = caller
        .call("one-at-a-time", "quick", &())
        .await
        .expect("a place is free again");
    assert_eq!(quick, "quick");
}
