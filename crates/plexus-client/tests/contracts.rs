//! Contracts declared from the Rust client, checked by a real broker.

use plexus_client::{Client, Contract, Error, ErrorCode, FnObject};
use plexus_test_support::TestBroker;
use serde_json::{Value, json};

fn add_params() -> Value {
    json!({
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"]
    })
}

/// `add` answers `{"sum": a + b}`, except for a = 13, where it answers a string.
fn adder() -> FnObject<
    impl Fn(String, Value, plexus_client::CallContext) -> std::future::Ready<Result<Value, Error>>
    + Send
    + Sync
    + 'static,
> {
    FnObject(|_method: String, params: Value, _ctx| {
        let (a, b) = (
            params["a"].as_i64().unwrap_or(0),
            params["b"].as_i64().unwrap_or(0),
        );
        let answer = if a == 13 {
            json!({"sum": "unlucky"})
        } else {
            json!({"sum": a + b})
        };
        std::future::ready(Ok(answer))
    })
}

fn remote(e: Error) -> (ErrorCode, Value) {
    match e {
        Error::Remote { code, data, .. } => (code, data.unwrap_or_default()),
        other => panic!("expected a remote error, got {other}"),
    }
}

#[tokio::test]
async fn a_rust_worker_declares_its_contract_and_the_broker_enforces_it() {
    let broker = TestBroker::start().await;
    let worker = Client::connect_to(&broker.addr()).await.expect("connect");
    worker
        .serve_with("math", adder())
        .method(
            "add",
            add_params(),
            json!({"type": "object", "properties": {"sum": {"type": "integer"}}}),
        )
        .describe("add", "Adds two integers.")
        .deprecated("add")
        .topic("math.done", json!({"type": "integer"}))
        .await
        .expect("served");
    let caller = Client::connect_to(&broker.addr()).await.expect("connect");

    let sum: Value = caller
        .call("math", "add", &json!({"a": 1, "b": 2}))
        .await
        .expect("valid");
    assert_eq!(sum, json!({"sum": 3}));
    let (code, data) = remote(
        caller
            .call::<_, Value>("math", "add", &json!({"a": 1, "b": "2"}))
            .await
            .expect_err("b is a string"),
    );
    assert_eq!(
        (code, &data["pointer"], &data["keyword"]),
        (ErrorCode::InvalidParams, &json!("/b"), &json!("type"))
    );
    let (code, data) = remote(
        caller
            .call::<_, Value>("math", "add", &json!({"a": 13, "b": 0}))
            .await
            .expect_err("the worker's result breaks the contract"),
    );
    assert_eq!(
        (code, &data["pointer"]),
        (ErrorCode::InvalidResult, &json!("/sum"))
    );
    let (code, _) = remote(
        caller
            .publish_acked("math.done", &"not a number")
            .await
            .expect_err("payload"),
    );
    assert_eq!(code, ErrorCode::InvalidParams);

    let intro: Value = caller
        .call("plexus", "introspect", &json!({"name": "math"}))
        .await
        .expect("introspect");
    let add = &intro["description"]["methods"]["add"];
    assert_eq!(
        (&add["description"], &add["deprecated"]),
        (&json!("Adds two integers."), &json!(true))
    );
    assert_eq!(add["params"], add_params());
}

#[tokio::test]
async fn a_contract_the_broker_refuses_fails_serve_with_the_reason() {
    let broker = TestBroker::start().await;
    let worker = Client::connect_to(&broker.addr()).await.expect("connect");
    let contract = Contract::new().method("add", json!({"type": "nonsense"}), Value::Null);
    let (code, _) = remote(
        worker
            .serve_with("math", adder())
            .contract(contract)
            .await
            .expect_err("refused"),
    );
    assert_eq!(code, ErrorCode::InvalidParams);
}

#[cfg(feature = "schemars")]
#[tokio::test]
async fn schemas_derived_from_rust_types_are_enforced() {
    #[derive(schemars::JsonSchema, serde::Deserialize)]
    #[allow(dead_code)]
    struct Add {
        a: i64,
        b: i64,
    }
    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Sum {
        sum: i64,
    }
    let broker = TestBroker::start().await;
    let worker = Client::connect_to(&broker.addr()).await.expect("connect");
    worker
        .serve_with("math", adder())
        .method_for::<Add, Sum>("add")
        .await
        .expect("served");
    let caller = Client::connect_to(&broker.addr()).await.expect("connect");
    let (code, data) = remote(
        caller
            .call::<_, Value>("math", "add", &json!({"a": 1}))
            .await
            .expect_err("b is missing"),
    );
    assert_eq!(
        (code, &data["keyword"]),
        (ErrorCode::InvalidParams, &json!("required"))
    );
    let (code, _) = remote(
        caller
            .call::<_, Value>("math", "add", &json!({"a": 13, "b": 1}))
            .await
            .expect_err("sum is not an integer"),
    );
    assert_eq!(code, ErrorCode::InvalidResult);
}
