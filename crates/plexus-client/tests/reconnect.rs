//! The client across a broker restart, against a real broker on a temporary socket.

use std::sync::Arc;
use std::time::Duration;

use plexus_client::{CallContext, Client, Error, ErrorCode, Object};
use plexus_test_support::{TestBroker, WAIT};
use serde_json::Value;
use serde_json::value::RawValue;
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
    let broker = TestBroker::start().await;
    let addr = broker.addr();
    let (first_started, release_first, first_done) = (
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
    );
    let (second_started, release_second) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let worker = Client::connect_to(&addr).await.expect("worker");
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
        .address(addr.as_str())
        .reconnect(false)
        .connect()
        .await
        .expect("caller");
    let first = tokio::spawn(async move { caller.call::<_, Value>("slow", "first", &()).await });
    tokio::time::timeout(WAIT, first_started.notified())
        .await
        .expect("the first call runs");

    let stopped = broker.stop().await;
    let _ = tokio::time::timeout(WAIT, first)
        .await
        .expect("the first caller hears");
    let broker = stopped.restart().await;
    let caller = Client::connect_to(&addr).await.expect("caller");
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

struct Calculator;

impl Object for Calculator {
    async fn call(&self, _: &str, _: &RawValue, _: &CallContext) -> Result<Value, Error> {
        Ok(Value::from(42))
    }
}

/// While the worker is away, another client takes its name on the new broker: the worker hears
/// that it lost the name, stops serving it, and may serve it again once it is free. The new
/// broker listens on another path until the name is taken, then its socket is moved to the
/// path the worker reconnects to.
#[tokio::test]
async fn a_worker_hears_of_a_name_taken_while_it_was_away() {
    let broker = TestBroker::start().await;
    let worker = Client::connect_to(&broker.addr()).await.expect("worker");
    let mut lost = worker.lost_names();
    worker.serve("math", Calculator).await.expect("serve");
    let stopped = broker.stop().await;

    let elsewhere = TestBroker::start().await;
    let thief = Client::connect_to(&elsewhere.addr()).await.expect("thief");
    thief
        .serve("math", Calculator)
        .await
        .expect("the name is free");
    std::fs::rename(&elsewhere.path, stopped.path()).expect("move the socket");

    let lost = tokio::time::timeout(WAIT, lost.next())
        .await
        .expect("told in time")
        .expect("open");
    assert_eq!(
        (lost.name.as_str(), lost.code),
        ("math", ErrorCode::NameTaken)
    );
    thief.unserve("math").await.expect("unserve");
    worker
        .serve("math", Calculator)
        .await
        .expect("the worker serves the name again once it is free");
}
