//! Broker lifecycle: socket files and permissions, a second broker, shutdown, the plexus object.

use std::os::unix::fs::PermissionsExt;

use plexus_broker::{Broker, BrokerError, Config};
use plexus_proto::{ErrorCode, Frame, Kind};

use plexus_test_support::{TestBroker, json};
use serde_json::json;

#[tokio::test]
async fn socket_is_private_and_a_second_broker_is_refused() {
    let broker = TestBroker::start().await;
    let mode = std::fs::metadata(&broker.path)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let second = Broker::bind(Config {
        socket: Some(broker.path.clone()),
        ..Config::default()
    })
    .await;
    match second {
        Err(BrokerError::AlreadyRunning(p)) => assert_eq!(p, broker.path),
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a second broker must not steal the socket"),
    }
    let mut c = broker.raw_client("still-works").await;
    assert_eq!(c.request(Frame::ping(1, b"")).await.kind(), Kind::Pong);
}

#[tokio::test]
async fn stale_socket_is_replaced_and_directory_created_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run").join("bus.sock");
    std::fs::create_dir(dir.path().join("run")).expect("mkdir");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("stale socket"));
    assert!(path.exists(), "a socket file nobody listens on");
    let broker = Broker::bind(Config {
        socket: Some(path.clone()),
        ..Config::default()
    })
    .await;
    assert!(broker.is_ok(), "stale socket replaced");
    drop(broker);

    let fresh = dir.path().join("new-dir").join("bus.sock");
    let broker = Broker::bind(Config {
        socket: Some(fresh.clone()),
        ..Config::default()
    })
    .await;
    assert!(broker.is_ok());
    let mode = std::fs::metadata(dir.path().join("new-dir"))
        .expect("dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);

    let not_socket = dir.path().join("file");
    std::fs::write(&not_socket, "data").expect("write");
    let refused = Broker::bind(Config {
        socket: Some(not_socket.clone()),
        ..Config::default()
    })
    .await;
    assert!(matches!(refused, Err(BrokerError::NotASocket(_))));
    assert_eq!(
        std::fs::read_to_string(&not_socket).expect("untouched"),
        "data"
    );
}

#[tokio::test]
async fn graceful_shutdown_answers_pending_calls_and_removes_the_socket() {
    let broker = TestBroker::start().await;
    let mut w = broker.raw_client("w").await;
    w.register(1, "obj").await;
    let mut c = broker.raw_client("c").await;
    c.send(Frame::call(1, "obj", "m", 60_000, b"")).await;
    assert_eq!(w.recv().await.kind(), Kind::Call);
    c.send(Frame::call(
        2,
        "plexus",
        "wait_for",
        60_000,
        br#"["never"]"#,
    ))
    .await;
    c.send(Frame::ping(3, b"")).await;
    assert_eq!(c.recv().await.kind(), Kind::Pong, "the wait is registered");
    let path = broker.path.clone();
    broker.stop().await;
    let mut codes = [c.recv().await, c.recv().await];
    codes.sort_by_key(|f| f.id());
    for (f, id) in codes.iter().zip([1, 2]) {
        assert_eq!((f.id(), f.error_code()), (id, ErrorCode::ShuttingDown));
    }
    c.expect_closed().await;
    w.expect_closed().await;
    assert!(!path.exists(), "socket removed");
}

#[tokio::test]
async fn broker_object_lists_names_with_credentials_waits_and_counts() {
    let broker = TestBroker::start().await;
    let mut waiter = broker.raw_client("waiter").await;
    waiter
        .send(Frame::call(
            1,
            "plexus",
            "wait_for",
            0,
            br#"{"names":["math","log"],"timeout_ms":10000}"#,
        ))
        .await;
    let mut w = broker.raw_client("calc-worker").await;
    w.register(1, "math").await;
    let mut l = broker.raw_client("logger").await;
    l.register(1, "log").await;
    let done = waiter.recv().await;
    assert_eq!((done.kind(), done.id()), (Kind::Reply, 1));
    assert_eq!(json(&done)["names"], serde_json::json!(["math", "log"]));

    let list = json(
        &waiter
            .request(Frame::call(2, "plexus", "list", 0, b""))
            .await,
    );
    let math = &list[1];
    assert_eq!(
        (math["name"].as_str(), math["kind"].as_str()),
        (Some("math"), Some("exclusive"))
    );
    let owner = &math["owners"][0];
    assert_eq!(owner["client"], "calc-worker");
    assert_eq!(
        owner["pid"],
        std::process::id(),
        "peer credentials from the socket"
    );
    assert_eq!(owner["uid"], rustix::process::getuid().as_raw());
    assert!(owner["exe"].as_str().is_some_and(|e| !e.is_empty()));

    let ping = json(
        &waiter
            .request(Frame::call(3, "plexus", "ping", 0, b""))
            .await,
    );
    assert_eq!(ping["pong"], true);
    let stats = json(
        &waiter
            .request(Frame::call(4, "plexus", "stats", 0, b""))
            .await,
    );
    assert_eq!(stats["connections"], 3);
    assert_eq!(stats["names"], 2);
    assert_eq!(stats["broker_calls"], 4);
    assert_eq!(stats["errors"]["no_such_object"], 0);
}

#[tokio::test]
async fn the_broker_object_counts_as_registered_and_its_names_are_reserved() {
    let broker = TestBroker::start().await;
    let mut c = broker.raw_client("c").await;
    let done = c
        .request(Frame::call(1, "plexus", "wait_for", 0, br#"["plexus"]"#))
        .await;
    assert_eq!(done.kind(), Kind::Reply, "wait_for(plexus) answers at once");
    let err = c.request(Frame::unregister(2, "plexus")).await;
    assert_eq!(err.error_code(), ErrorCode::PermissionDenied);
    let err = c
        .request(Frame::publish(3, "plexus.monitor.call", b"{}", false))
        .await;
    assert_eq!(
        err.error_code(),
        ErrorCode::PermissionDenied,
        "only the broker feeds the monitor"
    );
}

#[tokio::test]
async fn registration_declares_methods_for_introspect() {
    let broker = TestBroker::start().await;
    let mut w = broker.raw_client("w").await;
    let declared = br#"{"methods":{"add":{},"mul":{}}}"#;
    let ok = w
        .request(Frame::build(Kind::Register, 1, 0, 0, &["math"], declared))
        .await;
    assert_eq!(ok.kind(), Kind::Reply);
    let err = w
        .request(Frame::build(Kind::Register, 2, 0, 0, &["other"], b"[1,2]"))
        .await;
    assert_eq!(
        err.error_code(),
        ErrorCode::InvalidParams,
        "a description must be an object"
    );
    let info = json(
        &w.request(Frame::call(3, "plexus", "introspect", 0, br#""math""#))
            .await,
    );
    assert_eq!(
        info["description"]["methods"],
        serde_json::json!({"add":{},"mul":{}})
    );
    assert_eq!(info["kind"], "exclusive");
    let err = w
        .request(Frame::call(
            4,
            "plexus",
            "introspect",
            0,
            br#"{"name":"none"}"#,
        ))
        .await;
    assert_eq!(err.error_code(), ErrorCode::NoSuchObject);
}

#[tokio::test]
async fn monitor_feed_reports_calls_answers_broker_errors_and_events() {
    let broker = TestBroker::start().await;
    let mut m = broker.raw_client("monitor").await;
    m.subscribe(1, "plexus.monitor.*").await;
    let mut w = broker.raw_client("w").await;
    w.register(1, "obj").await;
    let mut c = broker.raw_client("c").await;
    c.send(Frame::call(5, "obj", "m", 0, br#"{"x":1}"#)).await;
    let call = w.recv().await;
    w.send(Frame::reply(call.id(), b"2")).await;
    assert_eq!(c.recv().await.kind(), Kind::Reply);
    c.send(Frame::call(6, "nobody", "m", 0, b"")).await;
    c.expect_error(ErrorCode::NoSuchObject).await;
    c.send(Frame::publish(0, "a.b", b"3", false)).await;
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let ev = m.recv().await;
        let record = json(&ev);
        kinds.push((
            ev.string(0).to_owned(),
            record["kind"].as_str().unwrap_or("").to_owned(),
        ));
        if record["kind"] == "call" {
            assert_eq!(
                (record["object"].as_str(), record["params"]["x"].as_i64()),
                (Some("obj"), Some(1))
            );
            assert_eq!(record["call_id"], call.id());
        }
    }
    let want = [
        ("call", "call"),
        ("reply", "reply"),
        ("error", "error"),
        ("event", "event"),
    ]
    .map(|(t, k)| (format!("plexus.monitor.{t}"), k.to_owned()));
    assert_eq!(kinds, want);
}

#[tokio::test]
async fn broad_wildcards_do_not_receive_the_monitor_feed() {
    let broker = TestBroker::start().await;
    let mut everything = broker.raw_client("everything").await;
    everything.subscribe(1, ">").await;
    let mut m = broker.raw_client("monitor").await;
    m.subscribe(1, "plexus.monitor.>").await;
    let mut p = broker.raw_client("p").await;
    p.send(Frame::publish(0, "a.b", b"1", false)).await;
    assert_eq!(m.recv().await.string(0), "plexus.monitor.event");
    let ev = everything.recv().await;
    assert_eq!(ev.string(0), "a.b");
    assert!(
        everything
            .try_recv(std::time::Duration::from_millis(100))
            .await
            .is_err(),
        "no monitor record for '>'"
    );
}

#[tokio::test]
async fn shutdown_closes_a_peer_that_never_reads_after_the_grace_period() {
    let broker = TestBroker::with_config(Config {
        shutdown_grace: std::time::Duration::from_millis(100),
        outbox_limit: 64 * 1024 * 1024,
        ..Config::default()
    })
    .await;
    let mut stalled = broker.raw_client("never-reads").await;
    stalled.subscribe(1, "bulk.>").await;
    let mut p = broker.raw_client("publisher").await;
    let body = vec![b'x'; 64 * 1024];
    const EVENTS: u64 = 200;
    for id in 1..=EVENTS {
        let ack = p
            .request(Frame::publish(id, "bulk.data", &body, true))
            .await;
        assert_eq!(json(&ack)["delivered"], 1, "queued for the stalled peer");
    }
    broker.stop().await;
    let received = stalled.events_until_closed().await;
    assert!(
        received < EVENTS,
        "the writer was stopped at the grace period, not left writing ({received} events arrived)"
    );
}

#[tokio::test]
async fn monitor_error_records_name_the_call_they_end_and_who_made_it() {
    let broker = TestBroker::start().await;
    let mut m = broker.raw_client("monitor").await;
    m.subscribe(1, "plexus.monitor.error").await;
    let mut w = broker.raw_client("slow-worker").await;
    w.register(1, "slow").await;
    let mut c = broker.raw_client("caller").await;
    c.send(Frame::call(7, "slow", "work", 20, b"")).await;
    let routed = w.recv().await.id();
    c.expect_error(ErrorCode::Timeout).await;
    let timeout = json(&m.recv().await);
    assert_eq!(
        (
            &timeout["code"],
            &timeout["object"],
            &timeout["method"],
            &timeout["call_id"],
            &timeout["id"],
            &timeout["to_client"],
        ),
        (
            &json!("timeout"),
            &json!("slow"),
            &json!("work"),
            &json!(routed),
            &json!(7),
            &json!("caller"),
        )
    );
    assert_eq!(timeout["to_pid"], json!(std::process::id()));

    c.send(Frame::call(8, "slow", "again", 0, b"")).await;
    let routed = loop {
        let f = w.recv().await;
        if f.kind() == Kind::Call {
            break f.id();
        }
    };
    drop(w);
    c.expect_error(ErrorCode::WorkerGone).await;
    let gone = json(&m.recv().await);
    assert_eq!(
        (&gone["code"], &gone["method"], &gone["call_id"]),
        (&json!("worker_gone"), &json!("again"), &json!(routed))
    );

    c.send(Frame::call(9, "nobody", "m", 0, b"")).await;
    c.expect_error(ErrorCode::NoSuchObject).await;
    let refused = json(&m.recv().await);
    assert_eq!(
        (
            &refused["object"],
            &refused["method"],
            refused.get("call_id")
        ),
        (&json!("nobody"), &json!("m"), None),
        "a call refused before routing has no call id"
    );
}
