//! The client across a broker restart, against a real broker on a temporary socket.

mod in_process_broker;

use std::sync::Arc;
use std::time::Duration;

use in_process_broker::{TestBroker, WAIT, addr};
use plexus_broker::Config;
use plexus_client::{CallContext, Client};
use serde_json::Value;
use tokio::sync::Notify;

/// Polls the broker's `list` (which routes no call, so call ids stay as they are) until `name`
/// is registered.
async fn until_registered(client: &Client, name: &str) {
    tokio::time::timeout(WAIT, async {
        loop {
            let list: Value = client.call("plexus", "list", &()).await.expect("list");
            if list
                .as_array()
                .is_some_and(|names| names.iter().any(|n| n["name"] == name))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("registered in time");
}

/// The handler of a call that outlives the broker answers after the restart, when the new broker
/// has routed another call with the same id to the same worker: that call must get its own answer.
/// The test runs on one thread, so a handler's answer reaches the socket task before the test
/// goes on.
#[tokio::test]
async fn an_answer_from_before_a_broker_restart_does_not_answer_a_new_call() {
    let dir = tempfile::tempdir().expect("dir");
    let broker = TestBroker::start(&dir, Config::default()).await;
    let (first_started, release_first, first_done) = (
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
    );
    let (second_started, release_second) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let worker = in_process_broker::client(&dir).await;
    {
        let (first_started, release_first, first_done) = (
            first_started.clone(),
            release_first.clone(),
            first_done.clone(),
        );
        let (second_started, release_second) = (second_started.clone(), release_second.clone());
        worker
            .serve_fn("slow", move |method, _params, _ctx: CallContext| {
                let (first_started, release_first, first_done) = (
                    first_started.clone(),
                    release_first.clone(),
                    first_done.clone(),
                );
                let (second_started, release_second) =
                    (second_started.clone(), release_second.clone());
                async move {
                    if method == "first" {
                        first_started.notify_one();
                        release_first.notified().await;
                        first_done.notify_one();
                    } else {
                        second_started.notify_one();
                        release_second.notified().await;
                    }
                    Ok(Value::String(method))
                }
            })
            .await
            .expect("serve");
    }
    let caller = Client::builder()
        .address(addr(&dir))
        .reconnect(false)
        .connect()
        .await
        .expect("caller");
    let first = tokio::spawn(async move { caller.call::<_, Value>("slow", "first", &()).await });
    tokio::time::timeout(WAIT, first_started.notified())
        .await
        .expect("the first call runs");

    broker.stop().await;
    let _ = tokio::time::timeout(WAIT, first)
        .await
        .expect("the first caller hears");
    let broker = TestBroker::start(&dir, Config::default()).await;
    let caller = in_process_broker::client(&dir).await;
    until_registered(&caller, "slow").await;
    let second = tokio::spawn({
        let caller = caller.clone();
        async move { caller.call::<_, Value>("slow", "second", &()).await }
    });
    tokio::time::timeout(WAIT, second_started.notified())
        .await
        .expect("the second call runs");

    release_first.notify_one();
    tokio::time::timeout(WAIT, first_done.notified())
        .await
        .expect("the first handler answers");
    release_second.notify_one();
    let answer = tokio::time::timeout(WAIT, second)
        .await
        .expect("answered")
        .expect("task")
        .expect("the second call succeeds");
    assert_eq!(answer, "second");
    drop(broker);
}
