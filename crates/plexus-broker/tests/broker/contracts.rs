//! Contracts: params, results and event payloads checked against JSON Schema 2020-12 at the
//! broker; pinned contracts; `$ref`; limits on schemas; each dialect's form of a refusal.

use bytes::BytesMut;
use plexus_broker::Config;
use plexus_proto::dialect::ipc_broker::{put_packet, take_packet};
use plexus_proto::{ErrorCode, Frame, Kind, flags};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use plexus_test_support::{RawClient, TestBroker, WAIT, json};

/// The contract most tests use: `math.add` takes `{a, b}` integers and returns `{sum}`;
/// `math.free` has none; topic `sensor.temp` carries `{celsius: number}`.
fn math_contract() -> Value {
    json!({
        "methods": {
            "add": {
                "description": "Adds two integers.",
                "params": {
                    "type": "object",
                    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                    "required": ["a", "b"],
                    "additionalProperties": false
                },
                "result": {
                    "type": "object",
                    "properties": {"sum": {"type": "integer"}},
                    "required": ["sum"]
                }
            },
            "free": {}
        },
        "topics": {
            "sensor.temp": {"payload": {
                "type": "object",
                "properties": {"celsius": {"type": "number"}},
                "required": ["celsius"]
            }}
        }
    })
}

fn register_frame(id: u64, name: &str, shared: bool, contract: &Value) -> Frame {
    let f = if shared { flags::SHARED } else { 0 };
    Frame::build(
        Kind::Register,
        id,
        0,
        f,
        &[name],
        contract.to_string().as_bytes(),
    )
}

/// Registers `name` with `contract`; the broker's answer.
async fn register<S>(client: &mut RawClient<S>, id: u64, name: &str, contract: &Value) -> Frame
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    client
        .request(register_frame(id, name, false, contract))
        .await
}

/// The error data of a refusal.
fn data(frame: &Frame) -> Value {
    json(frame)
}

#[tokio::test]
async fn params_are_checked_before_routing_and_the_worker_never_sees_bad_ones() {
    let broker = TestBroker::start().await;
    let mut worker = broker.raw_client("calc").await;
    let ok = register(&mut worker, 1, "math", &math_contract()).await;
    assert_eq!(ok.kind(), Kind::Reply, "{}", ok.string(0));
    let mut caller = broker.raw_client("caller").await;

    let bad = caller
        .request(Frame::call(7, "math", "add", 0, br#"{"a":1,"b":"two"}"#))
        .await;
    assert_eq!(bad.error_code(), ErrorCode::InvalidParams, "{bad:?}");
    let d = data(&bad);
    assert_eq!(d["check"], "params");
    assert_eq!(
        (d["object"].as_str(), d["method"].as_str()),
        (Some("math"), Some("add"))
    );
    assert_eq!(d["pointer"], "/b");
    assert_eq!(d["keyword"], "type");
    assert!(
        d["reason"].as_str().is_some_and(|r| r.contains("integer")),
        "{d}"
    );
    assert!(bad.string(0).contains("at /b"), "{}", bad.string(0));

    for (params, keyword, pointer) in [
        (&br#"{"a":1}"#[..], "required", ""),
        (br#"{"a":1,"b":2,"c":3}"#, "additionalProperties", ""),
        (b"", "type", ""),
        (b"{not json", "json", ""),
    ] {
        let r = caller
            .request(Frame::call(8, "math", "add", 0, params))
            .await;
        assert_eq!(r.error_code(), ErrorCode::InvalidParams);
        assert_eq!(
            (data(&r)["keyword"].as_str(), data(&r)["pointer"].as_str()),
            (Some(keyword), Some(pointer))
        );
    }

    // Valid params go through as the same bytes; a method without a schema gets anything.
    caller
        .send(Frame::call(9, "math", "add", 0, br#"{"a":1, "b":2}"#))
        .await;
    let call = worker.recv().await;
    assert_eq!(
        call.kind(),
        Kind::Call,
        "the refused calls never reached the worker"
    );
    assert_eq!(
        (call.string(1), &call.payload()[..]),
        ("add", &br#"{"a":1, "b":2}"#[..])
    );
    worker.send(Frame::reply(call.id(), br#"{"sum":3}"#)).await;
    assert_eq!(json(&caller.recv().await), json!({"sum": 3}));
    caller
        .send(Frame::call(10, "math", "free", 0, b"not even json"))
        .await;
    let call = worker.recv().await;
    assert_eq!(call.string(1), "free");

    // A name without a contract is untouched.
    let mut plain = broker.raw_client("plain").await;
    plain.register(1, "plain").await;
    caller.send(Frame::call(11, "plain", "add", 0, b"{}")).await;
    assert_eq!(plain.recv().await.string(1), "add");

    // The refusals are counted as invalid_params calls.
    let stats = caller
        .request(Frame::call(12, "plexus", "stats", 0, b""))
        .await;
    assert!(
        json(&stats)["errors"]["invalid_params"].as_u64() >= Some(5),
        "{}",
        json(&stats)
    );
}

#[tokio::test]
async fn results_are_checked_before_forwarding_unless_switched_off() {
    for check_results in [true, false] {
        let broker = TestBroker::with_config(Config {
            check_results,
            ..Config::default()
        })
        .await;
        let mut worker = broker.raw_client("calc").await;
        assert_eq!(
            register(&mut worker, 1, "math", &math_contract())
                .await
                .kind(),
            Kind::Reply
        );
        let mut caller = broker.raw_client("caller").await;

        caller
            .send(Frame::call(1, "math", "add", 0, br#"{"a":1,"b":2}"#))
            .await;
        let call = worker.recv().await;
        worker
            .send(Frame::reply(call.id(), br#"{"sum":"three"}"#))
            .await;
        let answer = caller.recv().await;
        if check_results {
            assert_eq!(answer.error_code(), ErrorCode::InvalidResult, "{answer:?}");
            let d = data(&answer);
            assert_eq!(
                (
                    d["check"].as_str(),
                    d["pointer"].as_str(),
                    d["keyword"].as_str()
                ),
                (Some("result"), Some("/sum"), Some("type"))
            );
            assert!(
                answer
                    .string(0)
                    .starts_with("the result of math.add does not match"),
                "{}",
                answer.string(0)
            );
        } else {
            assert_eq!(answer.kind(), Kind::Reply);
            assert_eq!(json(&answer), json!({"sum": "three"}));
        }

        // A good result, and a worker's error, pass unchanged.
        caller
            .send(Frame::call(2, "math", "add", 0, br#"{"a":1,"b":2}"#))
            .await;
        let call = worker.recv().await;
        worker.send(Frame::reply(call.id(), br#"{"sum":3}"#)).await;
        let answer = caller.recv().await;
        assert_eq!((answer.kind(), answer.id()), (Kind::Reply, 2));
        caller
            .send(Frame::call(3, "math", "add", 0, br#"{"a":1,"b":2}"#))
            .await;
        let call = worker.recv().await;
        worker
            .send(Frame::error(call.id(), ErrorCode::Internal, "boom", b""))
            .await;
        let answer = caller.expect_error(ErrorCode::Internal).await;
        assert_eq!(answer.string(0), "boom");
    }
}

#[tokio::test]
async fn event_payloads_are_checked_before_fan_out() {
    let broker = TestBroker::start().await;
    let mut owner = broker.raw_client("sensors").await;
    assert_eq!(
        register(&mut owner, 1, "sensors", &math_contract())
            .await
            .kind(),
        Kind::Reply
    );
    let mut sub = broker.raw_client("sub").await;
    sub.subscribe(5, "sensor.>").await;
    let mut publisher = broker.raw_client("pub").await;

    let refused = publisher
        .request(Frame::publish(
            1,
            "sensor.temp",
            br#"{"celsius":"warm"}"#,
            true,
        ))
        .await;
    assert_eq!(refused.error_code(), ErrorCode::InvalidParams);
    let d = data(&refused);
    assert_eq!(
        (
            d["check"].as_str(),
            d["topic"].as_str(),
            d["pointer"].as_str()
        ),
        (Some("payload"), Some("sensor.temp"), Some("/celsius"))
    );
    // Without an ack the publisher is told too.
    publisher
        .send(Frame::publish(2, "sensor.temp", b"{}", false))
        .await;
    assert_eq!(
        publisher.expect_error(ErrorCode::InvalidParams).await.id(),
        2
    );

    let ack = publisher
        .request(Frame::publish(
            3,
            "sensor.temp",
            br#"{"celsius":21.5}"#,
            true,
        ))
        .await;
    assert_eq!(json(&ack)["delivered"], 1);
    publisher
        .send(Frame::publish(4, "sensor.other", b"anything", false))
        .await;
    let first = sub.recv().await;
    assert_eq!(
        (first.kind(), json(&first)),
        (Kind::Event, json!({"celsius": 21.5})),
        "only the valid event was delivered"
    );
    assert_eq!(sub.recv().await.string(0), "sensor.other");

    // The contract goes with its name.
    owner.request(Frame::unregister(2, "sensors")).await;
    let ack = publisher
        .request(Frame::publish(5, "sensor.temp", b"{}", true))
        .await;
    assert_eq!(ack.kind(), Kind::Reply, "no contract once the name is gone");
}

#[tokio::test]
async fn refs_resolve_within_the_document_and_to_registered_contracts_only() {
    let broker = TestBroker::start().await;
    let mut geo = broker.raw_client("geo").await;
    let geo_contract = json!({
        "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}, "required": ["x", "y"]}},
        "methods": {"origin": {"result": {"$ref": "#/$defs/point"}}}
    });
    assert_eq!(
        register(&mut geo, 1, "geo", &geo_contract).await.kind(),
        Kind::Reply
    );
    let mut worker = broker.raw_client("shapes").await;
    let shapes = json!({
        "$defs": {"radius": {"type": "number", "minimum": 0}},
        "methods": {"circle": {"params": {
            "type": "object",
            "properties": {"center": {"$ref": "plexus://contracts/geo#/$defs/point"}, "r": {"$ref": "#/$defs/radius"}},
            "required": ["center", "r"]
        }}}
    });
    let ok = register(&mut worker, 1, "shapes", &shapes).await;
    assert_eq!(ok.kind(), Kind::Reply, "{}", ok.string(0));
    let mut caller = broker.raw_client("caller").await;
    let r = caller
        .request(Frame::call(
            1,
            "shapes",
            "circle",
            0,
            br#"{"center":{"x":1},"r":-1}"#,
        ))
        .await;
    assert_eq!(r.error_code(), ErrorCode::InvalidParams);
    assert_eq!(data(&r)["pointer"], "/center");
    let r = caller
        .request(Frame::call(
            2,
            "shapes",
            "circle",
            0,
            br#"{"center":{"x":1,"y":2},"r":-1}"#,
        ))
        .await;
    assert_eq!(
        (data(&r)["pointer"].as_str(), data(&r)["keyword"].as_str()),
        (Some("/r"), Some("minimum"))
    );

    for (contract, want) in [
        (
            json!({"methods": {"m": {"params": {"$ref": "plexus://contracts/nobody#/$defs/x"}}}}),
            "no contract named 'nobody' is registered",
        ),
        (
            json!({"methods": {"m": {"params": {"$ref": "https://example.com/schema.json"}}}}),
            "schema at /methods/m/params",
        ),
        (
            json!({"methods": {"m": {"params": {"$ref": "file:///etc/passwd"}}}}),
            "schema at /methods/m/params",
        ),
        (
            json!({"methods": {"m": {"params": {"$ref": "#/$defs/missing"}}}}),
            "schema at /methods/m/params",
        ),
    ] {
        let mut c = broker.raw_client("bad").await;
        let r = register(&mut c, 1, "bad", &contract).await;
        assert_eq!(r.error_code(), ErrorCode::InvalidParams, "{contract}");
        assert!(r.string(0).contains(want), "{contract}: {}", r.string(0));
        let list = caller
            .request(Frame::call(9, "plexus", "list", 0, b""))
            .await;
        assert!(
            !json(&list).to_string().contains("\"bad\""),
            "a refused registration leaves no name"
        );
    }
}

#[tokio::test]
async fn huge_deep_or_malformed_contracts_are_refused_with_the_limit_named() {
    let broker = TestBroker::with_config(Config {
        max_description_bytes: 4096,
        max_contract_depth: 8,
        ..Config::default()
    })
    .await;
    let mut c = broker.raw_client("w").await;
    let mut deep = json!({"type": "integer"});
    for _ in 0..10 {
        deep = json!({"items": deep});
    }
    let huge = json!({"methods": {"m": {"params": {"enum": vec!["x".repeat(100); 50]}}}});
    for (contract, want) in [
        (
            json!({"methods": {"m": {"params": deep}}}),
            "max_contract_depth = 8",
        ),
        (huge, "max_description_bytes = 4096"),
        (
            json!({"methods": {"m": {"params": "an integer"}}}),
            "must be a JSON Schema",
        ),
        (
            json!({"methods": {"m": {"params": {"type": "integr"}}}}),
            "schema at /methods/m/params",
        ),
        (
            json!({"methods": {"m": {"params": {"pattern": "("}}}}),
            "schema at /methods/m/params",
        ),
        (json!({"topics": {"a.*": {"payload": {}}}}), "exact topics"),
    ] {
        let r = register(&mut c, 1, "svc", &contract).await;
        assert_eq!(r.error_code(), ErrorCode::InvalidParams, "{want}");
        assert!(r.string(0).contains(want), "{want}: {}", r.string(0));
    }
    // The connection and the broker go on.
    let ok = register(
        &mut c,
        2,
        "svc",
        &json!({"methods": {"m": {"params": {"type": "integer"}}}}),
    )
    .await;
    assert_eq!(ok.kind(), Kind::Reply);
}

#[tokio::test]
async fn pinned_contracts_refuse_a_different_contract_and_apply_to_workers_that_declare_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("math.json"), math_contract().to_string()).expect("write");
    std::fs::write(dir.path().join("README.txt"), "not a contract").expect("write");
    let broker = TestBroker::with_config(Config {
        contracts_dir: Some(dir.path().to_owned()),
        ..Config::default()
    })
    .await;
    let mut publisher = broker.raw_client("pub").await;
    let r = publisher
        .request(Frame::publish(1, "sensor.temp", b"{}", true))
        .await;
    assert_eq!(
        r.error_code(),
        ErrorCode::InvalidParams,
        "a pinned topic is checked from the start"
    );

    let mut rogue = broker.raw_client("rogue").await;
    let mut changed = math_contract();
    changed["methods"]["add"]["params"]["properties"]["b"]["type"] = json!("string");
    let r = register(&mut rogue, 1, "math", &changed).await;
    assert_eq!(r.error_code(), ErrorCode::InvalidParams);
    assert_eq!(
        r.string(0),
        "the contract offered for 'math' differs from the contract pinned for it by the operator: /methods/add/params/properties/b/type is \"string\" where the expected contract has \"integer\""
    );

    // The same contract (descriptions may differ) is accepted; so is none, under the pin.
    let mut same = math_contract();
    same["methods"]["add"]["description"] = json!("Sums.");
    let r = register(&mut rogue, 2, "math", &same).await;
    assert_eq!(r.kind(), Kind::Reply, "{}", r.string(0));
    rogue.request(Frame::unregister(3, "math")).await;

    let mut worker = broker.raw_client("calc").await;
    worker.register(1, "math").await;
    let mut caller = broker.raw_client("caller").await;
    let r = caller
        .request(Frame::call(1, "math", "add", 0, br#"{"a":"x","b":1}"#))
        .await;
    assert_eq!(r.error_code(), ErrorCode::InvalidParams);
    let intro = caller
        .request(Frame::call(
            2,
            "plexus",
            "introspect",
            0,
            br#"{"name":"math"}"#,
        ))
        .await;
    assert_eq!(
        json(&intro)["description"]["methods"]["add"]["description"],
        "Adds two integers.",
        "{}",
        json(&intro)
    );
}

#[tokio::test]
async fn a_broken_pinned_contract_stops_the_broker_from_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("math.json"),
        r#"{"methods":{"add":{"params":{"type":7}}}}"#,
    )
    .expect("write");
    let config = Config {
        contracts_dir: Some(dir.path().to_owned()),
        socket: Some(dir.path().join("bus.sock")),
        ..Config::default()
    };
    let err = plexus_broker::Broker::bind(config)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("math.json"), "{err}");
}

#[tokio::test]
async fn queue_group_members_must_agree_on_the_contract() {
    let broker = TestBroker::start().await;
    let mut first = broker.raw_client("a").await;
    let r = first
        .request(register_frame(1, "math", true, &math_contract()))
        .await;
    assert_eq!(r.kind(), Kind::Reply);
    let mut second = broker.raw_client("b").await;
    let r = second
        .request(register_frame(
            1,
            "math",
            true,
            &json!({"methods": {"add": {"params": true}}}),
        ))
        .await;
    assert_eq!(r.error_code(), ErrorCode::InvalidParams);
    assert!(
        r.string(0).contains("the contract of its queue group"),
        "{}",
        r.string(0)
    );
    let r = second.request(Frame::register(2, "math", true)).await;
    assert_eq!(
        r.kind(),
        Kind::Reply,
        "a member declaring nothing joins under the group's contract"
    );
    first.request(Frame::unregister(2, "math")).await;
    let mut caller = broker.raw_client("c").await;
    let r = caller
        .request(Frame::call(1, "math", "add", 0, b"{}"))
        .await;
    assert_eq!(
        r.error_code(),
        ErrorCode::InvalidParams,
        "the contract stays while a member does"
    );
}

#[tokio::test]
async fn the_monitor_feed_marks_refusals() {
    let broker = TestBroker::start().await;
    let mut worker = broker.raw_client("calc").await;
    assert_eq!(
        register(&mut worker, 1, "math", &math_contract())
            .await
            .kind(),
        Kind::Reply
    );
    let mut monitor = broker.raw_client("mon").await;
    monitor.subscribe(1, "plexus.monitor.error").await;
    let mut caller = broker.raw_client("caller").await;
    caller
        .request(Frame::call(1, "math", "add", 0, b"[]"))
        .await;
    let record = json(&monitor.recv().await);
    assert_eq!(
        (
            record["code"].as_str(),
            record["contract"].as_str(),
            record["method"].as_str()
        ),
        (Some("invalid_params"), Some("params"), Some("add")),
        "{record}"
    );
}

#[tokio::test]
async fn json_rpc_and_ipc_broker_peers_get_their_own_error_form() {
    let broker = TestBroker::start().await;
    let mut worker = broker.raw_client("calc").await;
    assert_eq!(
        register(&mut worker, 1, "math", &math_contract())
            .await
            .kind(),
        Kind::Reply
    );

    let stream = UnixStream::connect(&broker.path).await.expect("connect");
    let mut lines = BufReader::new(stream);
    lines
        .get_mut()
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"math.add\",\"params\":{\"a\":1,\"b\":[]}}\n")
        .await
        .expect("write");
    let mut line = String::new();
    tokio::time::timeout(WAIT, lines.read_line(&mut line))
        .await
        .expect("in time")
        .expect("read");
    let answer: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert_eq!(answer["error"]["data"]["plexus_error"], "invalid_params");
    assert_eq!(answer["error"]["data"]["pointer"], "/b");
    assert_eq!(answer["error"]["data"]["keyword"], "type");

    let mut ipc = UnixStream::connect(&broker.path).await.expect("connect");
    let mut packet = BytesMut::new();
    let call = json!({"Call": {"call_id": "c-1", "object_name": "math", "method": "add", "args": {"a": 1}}});
    put_packet(&mut packet, call.to_string().as_bytes());
    ipc.write_all(&packet).await.expect("write");
    let mut buf = BytesMut::new();
    let answer: Value = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(body) = take_packet(&mut buf, u32::MAX).expect("valid packet") {
                return serde_json::from_slice(&body).expect("JSON");
            }
            assert!(ipc.read_buf(&mut buf).await.expect("read") > 0, "closed");
        }
    })
    .await
    .expect("an answer in time");
    let text = answer.to_string();
    assert!(
        text.contains("c-1") && text.contains("invalid_params") && text.contains("required"),
        "{answer}"
    );
}

#[tokio::test]
async fn contracts_compiled_by_the_reader_reach_the_right_registration() {
    let broker = TestBroker::start().await;
    let mut worker = broker.raw_client("w").await;
    let int = json!({"methods": {"m": {"params": {"type": "integer"}}}});
    let text = json!({"methods": {"m": {"params": {"type": "string"}}}});
    // Two registers with the same request id in one write: each keeps its own contract.
    let mut both = BytesMut::new();
    plexus_proto::encode(&register_frame(5, "ints", false, &int), &mut both);
    plexus_proto::encode(&register_frame(5, "texts", false, &text), &mut both);
    worker.send_bytes(&both).await;
    for _ in 0..2 {
        let ok = worker.recv().await;
        assert_eq!((ok.kind(), ok.id()), (Kind::Reply, 5), "{}", ok.string(0));
    }
    // A large contract (hundreds of regexes) is compiled off the router and enforced.
    let mut props = serde_json::Map::new();
    for i in 0..600 {
        props.insert(
            format!("p{i}"),
            json!({"type": "string", "pattern": format!("^[a-z]{{1,{}}}[0-9]+$", i % 40 + 1)}),
        );
    }
    let big = json!({"methods": {"m": {"params": {"type": "object", "properties": props}}}});
    assert!(big.to_string().len() > 30_000);
    let r = register(&mut worker, 6, "big", &big).await;
    assert_eq!(r.kind(), Kind::Reply, "{}", r.string(0));

    let mut caller = broker.raw_client("c").await;
    for (object, params, ok) in [
        ("ints", &b"1"[..], true),
        ("ints", b"\"x\"", false),
        ("texts", b"\"x\"", true),
        ("texts", b"1", false),
        ("big", br#"{"p7":"abc123"}"#, true),
        ("big", br#"{"p7":"123"}"#, false),
    ] {
        caller.send(Frame::call(1, object, "m", 0, params)).await;
        if ok {
            let call = worker.recv().await;
            assert_eq!(call.string(0), object);
            worker.send(Frame::reply(call.id(), b"null")).await;
            assert_eq!(caller.recv().await.kind(), Kind::Reply);
        } else {
            let r = caller.expect_error(ErrorCode::InvalidParams).await;
            assert_eq!(data(&r)["object"], object);
        }
    }
}
