//! The client library against a real broker on a temporary socket.

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plexus_broker::Config;
use plexus_client::{CallContext, Client, Error, ErrorCode, Object, parse_params};
use plexus_test_support::{TestBroker, WAIT};
use serde_json::{Value, json, value::RawValue};
use tokio::sync::{Notify, oneshot};

/// Connects a client to a test broker.
trait Connect {
    async fn client(&self) -> Client;
}

impl Connect for TestBroker {
    async fn client(&self) -> Client {
        Client::connect_to(&self.addr()).await.expect("connect")
    }
}

#[derive(serde::Deserialize)]
struct Args {
    a: i64,
    b: i64,
}

struct Calculator;

impl Object for Calculator {
    async fn call(
        &self,
        method: &str,
        params: &RawValue,
        _ctx: &CallContext,
    ) -> Result<Value, Error> {
        let Args { a, b } = parse_params(params)?;
        match method {
            "add" => Ok(json!({ "sum": a + b })),
            "mul" => Ok(json!({ "product": a * b })),
            other => Err(Error::no_such_method(other)),
        }
    }
}

#[derive(serde::Serialize)]
struct Params {
    a: i64,
    b: i64,
}

#[derive(serde::Deserialize, Debug, PartialEq)]
struct Sum {
    sum: i64,
}

#[tokio::test]
async fn typed_call_round_trip_and_errors_carry_codes() {
    let broker = TestBroker::start().await;
    let worker = broker.client().await;
    worker.serve("math", Calculator).await.expect("serve");
    let client = broker.client().await;
    let sum: Sum = client
        .call("math", "add", &Params { a: 10, b: 32 })
        .await
        .expect("call");
    assert_eq!(sum, Sum { sum: 42 });
    let product: Value = client
        .call("math", "mul", &json!({"a": 6, "b": 7}))
        .await
        .expect("mul");
    assert_eq!(product, json!({"product": 42}));

    let err = client
        .call::<_, Value>("math", "div", &json!({"a": 1, "b": 1}))
        .await
        .expect_err("no div");
    assert_eq!(err.code(), ErrorCode::NoSuchMethod);
    let err = client
        .call::<_, Value>("math", "add", &json!({"x": 1}))
        .await
        .expect_err("bad params");
    assert_eq!(err.code(), ErrorCode::InvalidParams);
    let err = client
        .call::<_, Value>("nobody", "x", &())
        .await
        .expect_err("no object");
    assert_eq!(err.code(), ErrorCode::NoSuchObject);
    let raw = client
        .call_raw("math", "add", br#"{"a":1,"b":1}"#, WAIT)
        .await
        .expect("raw");
    assert_eq!(&raw[..], br#"{"sum":2}"#);
    let err = worker
        .serve("math", Calculator)
        .await
        .expect_err("already served by this connection");
    assert_eq!(
        err.code(),
        ErrorCode::NameTaken,
        "a second serve of the same name is refused: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_from_many_tasks_share_one_client() {
    let broker = TestBroker::start().await;
    let worker = broker.client().await;
    worker.serve("math", Calculator).await.expect("serve");
    let client = broker.client().await;
    let mut tasks = Vec::new();
    for t in 0..50i64 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..100i64 {
                let sum: Sum = client
                    .call("math", "add", &Params { a: t, b: i })
                    .await
                    .expect("call");
                assert_eq!(sum.sum, t + i, "each task gets its own answers");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
}

struct SlowAndFast {
    slow_started: Arc<Notify>,
    release_slow: Arc<Notify>,
}

impl Object for SlowAndFast {
    async fn call(
        &self,
        method: &str,
        _params: &RawValue,
        _ctx: &CallContext,
    ) -> Result<Value, Error> {
        if method == "slow" {
            self.slow_started.notify_one();
            self.release_slow.notified().await;
        }
        Ok(json!(method))
    }
}

#[tokio::test]
async fn a_slow_method_does_not_delay_a_fast_one() {
    let broker = TestBroker::start().await;
    let worker = broker.client().await;
    let (slow_started, release_slow) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    worker
        .serve(
            "svc",
            SlowAndFast {
                slow_started: slow_started.clone(),
                release_slow: release_slow.clone(),
            },
        )
        .await
        .expect("serve");
    let client = broker.client().await;
    let slow_client = client.clone();
    let slow = tokio::spawn(async move { slow_client.call::<_, Value>("svc", "slow", &()).await });
    tokio::time::timeout(WAIT, slow_started.notified())
        .await
        .expect("slow started");
    let fast: Value = client.call("svc", "fast", &()).await.expect("fast");
    assert_eq!(fast, "fast");
    assert!(
        !slow.is_finished(),
        "the slow call is still running while the fast one finished"
    );
    release_slow.notify_one();
    assert_eq!(slow.await.expect("task").expect("slow"), "slow");
}

#[tokio::test]
async fn worker_gone_timeout_and_cancel_on_drop() {
    let broker = TestBroker::start().await;
    let (cancelled_tx, cancelled_rx) = oneshot::channel::<String>();
    let cancelled_tx = Arc::new(std::sync::Mutex::new(Some(cancelled_tx)));
    let worker = Client::builder()
        .address(broker.addr())
        .reconnect(false)
        .connect()
        .await
        .expect("worker");
    worker
        .serve_fn("hang", move |method, _params, ctx: CallContext| {
            let cancelled_tx = cancelled_tx.clone();
            async move {
                ctx.cancelled().await;
                if let Some(tx) = cancelled_tx.lock().ok().and_then(|mut t| t.take()) {
                    let _ = tx.send(method);
                }
                Ok(Value::Null)
            }
        })
        .await
        .expect("serve");
    let client = broker.client().await;

    let err = client
        .call::<_, Value>("hang", "t", &())
        .timeout(Duration::from_millis(50))
        .await
        .expect_err("times out");
    assert_eq!(err.code(), ErrorCode::Timeout);

    let dropped = tokio::time::timeout(
        Duration::from_millis(50),
        client
            .call::<_, Value>("hang", "dropped", &())
            .into_future(),
    );
    assert!(
        dropped.await.is_err(),
        "the local timeout dropped the call future"
    );
    let cancelled_method = tokio::time::timeout(WAIT, cancelled_rx)
        .await
        .expect("in time");
    assert_eq!(
        cancelled_method.ok().as_deref(),
        Some("t"),
        "the first cancel seen was the timed-out call's"
    );

    let pending = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .call::<_, Value>("hang", "forever", &())
                .timeout(Duration::from_secs(60))
                .await
        })
    };
    for _ in 0..1000 {
        let stats: Value = client.call("plexus", "stats", &()).await.expect("stats");
        if stats["pending_calls"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(worker);
    let err = tokio::time::timeout(WAIT, pending)
        .await
        .expect("answered at once")
        .expect("task")
        .expect_err("worker gone");
    assert_eq!(err.code(), ErrorCode::WorkerGone, "{err}");
}

#[tokio::test]
async fn cancel_of_a_dropped_future_reaches_the_worker_context() {
    let broker = TestBroker::start().await;
    let worker = broker.client().await;
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let (seen_tx, seen_rx) = oneshot::channel::<bool>();
    let slots = Arc::new(std::sync::Mutex::new((Some(started_tx), Some(seen_tx))));
    worker
        .serve_fn("job", move |_m, _p, ctx: CallContext| {
            let slots = slots.clone();
            async move {
                if let Some(tx) = slots.lock().ok().and_then(|mut s| s.0.take()) {
                    let _ = tx.send(());
                }
                ctx.cancelled().await;
                if let Some(tx) = slots.lock().ok().and_then(|mut s| s.1.take()) {
                    let _ = tx.send(ctx.is_cancelled());
                }
                Ok(Value::Null)
            }
        })
        .await
        .expect("serve");
    let client = broker.client().await;
    let call = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .call::<_, Value>("job", "run", &())
                .timeout(Duration::from_secs(60))
                .await
        }
    });
    tokio::time::timeout(WAIT, started_rx)
        .await
        .expect("started")
        .expect("sender");
    call.abort();
    let seen = tokio::time::timeout(WAIT, seen_rx)
        .await
        .expect("cancel reached the worker")
        .expect("sender");
    assert!(seen);
}

#[tokio::test]
async fn a_panicking_handler_answers_internal_and_the_worker_keeps_serving() {
    let broker = TestBroker::start().await;
    let worker = broker.client().await;
    worker
        .serve_fn("fragile", |method, _p, _c| async move {
            if method == "boom" {
                panic!("kaboom");
            }
            Ok(json!("fine"))
        })
        .await
        .expect("serve");
    let client = broker.client().await;
    let err = client
        .call::<_, Value>("fragile", "boom", &())
        .await
        .expect_err("panics");
    assert_eq!(err.code(), ErrorCode::Internal);
    assert!(err.to_string().contains("kaboom"), "{err}");
    let ok: Value = client
        .call("fragile", "other", &())
        .await
        .expect("still serving");
    assert_eq!(ok, "fine");
}

#[tokio::test]
async fn one_client_serves_calls_and_subscribes_at_once() {
    let broker = TestBroker::start().await;
    let a = broker.client().await;
    let b = broker.client().await;
    a.serve("calc-a", Calculator).await.expect("serve a");
    b.serve("calc-b", Calculator).await.expect("serve b");
    let mut events = a.subscribe("news.*").await.expect("subscribe");
    let from_a: Sum = a
        .call("calc-b", "add", &Params { a: 1, b: 2 })
        .await
        .expect("a calls b");
    let from_b: Sum = b
        .call("calc-a", "add", &Params { a: 3, b: 4 })
        .await
        .expect("b calls a");
    b.publish("news.today", &json!({"headline": "x"}))
        .await
        .expect("publish");
    let self_call: Sum = a
        .call("calc-a", "add", &Params { a: 5, b: 5 })
        .await
        .expect("a calls itself");
    let event = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("event")
        .expect("open");
    assert_eq!((from_a.sum, from_b.sum, self_call.sum), (3, 7, 10));
    assert_eq!(event.topic, "news.today");
    assert_eq!(
        event.json::<Value>().expect("json"),
        json!({"headline": "x"})
    );
}

#[tokio::test]
async fn reconnects_after_a_broker_restart_and_restores_names_and_subscriptions() {
    let broker = TestBroker::start().await;
    let addr = broker.addr();
    let worker = broker.client().await;
    worker.serve("math", Calculator).await.expect("serve");
    let mut events = worker.subscribe("restart.>").await.expect("subscribe");
    let stopped = broker.stop().await;

    let err = worker
        .call::<_, Value>("math", "add", &Params { a: 1, b: 1 })
        .await
        .expect_err("no broker");
    assert!(
        matches!(err, Error::NotConnected | Error::ConnectionLost(_)),
        "{err}"
    );

    let broker = stopped.restart().await;
    assert_eq!(broker.addr(), addr);
    let other = broker.client().await;
    other
        .wait_for(&["math"], WAIT)
        .await
        .expect("the worker re-registered");
    let sum: Sum = other
        .call("math", "add", &Params { a: 20, b: 22 })
        .await
        .expect("callable again");
    assert_eq!(sum.sum, 42);
    // The re-subscription is sent right after the re-registration on the same connection.
    other
        .publish("restart.done", &json!(1))
        .await
        .expect("publish");
    let event = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("event after restart")
        .expect("open");
    assert_eq!(event.topic, "restart.done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_lost_for_100k_events_to_three_subscribers() {
    let config = Config {
        outbox_limit: 256 * 1024 * 1024,
        ..Config::default()
    };
    let broker = TestBroker::with_config(config).await;
    const N: u64 = 100_000;
    let mut readers = Vec::new();
    for _ in 0..3 {
        let sub = Client::builder()
            .address(broker.addr())
            .subscription_capacity(N as usize)
            .connect()
            .await
            .expect("sub");
        let mut events = sub.subscribe("load.*").await.expect("subscribe");
        readers.push(tokio::spawn(async move {
            let _keep = sub;
            let mut next = 0u64;
            while next < N {
                let event = tokio::time::timeout(WAIT, events.next())
                    .await
                    .expect("event in time")
                    .expect("open");
                assert_eq!(event.dropped, 0, "nothing dropped");
                assert_eq!(event.json::<u64>().expect("number"), next, "in order");
                next += 1;
            }
            next
        }));
    }
    let publisher = broker.client().await;
    for i in 0..N {
        publisher.publish("load.seq", &i).await.expect("publish");
    }
    for r in readers {
        assert_eq!(r.await.expect("reader"), N);
    }
    let stats: Value = publisher.call("plexus", "stats", &()).await.expect("stats");
    assert_eq!(stats["events_dropped"], 0);
    assert_eq!(stats["events_delivered"], 3 * N);
}

#[tokio::test]
async fn clear_errors_without_a_broker_or_with_a_stranger() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("none.sock");
    let err = Client::connect_to(&format!("unix:{}", missing.display()))
        .await
        .expect_err("no broker");
    assert!(matches!(err, Error::NoBroker { .. }), "{err}");
    assert!(
        err.to_string().contains("plexus broker") && err.to_string().contains("none.sock"),
        "{err}"
    );

    let stranger = dir.path().join("stranger.sock");
    let listener = tokio::net::UnixListener::bind(&stranger).expect("bind");
    tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(b"220 smtp.example ESMTP ready\r\n").await;
        }
    });
    let err = Client::connect_to(stranger.to_str().expect("utf8"))
        .await
        .expect_err("not plexus");
    assert!(matches!(err, Error::Handshake { .. }), "{err}");
    assert!(err.to_string().contains("magic"), "{err}");
    let err = Client::connect_to("tcp://nohost")
        .await
        .expect_err("bad address");
    assert!(matches!(err, Error::Address(_)), "{err}");
}

#[test]
fn blocking_client_calls_serves_and_subscribes() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let broker = runtime.block_on(TestBroker::start());
    let addr = broker.addr();
    let worker = plexus_client::blocking::Client::connect_to(&addr).expect("worker");
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    worker
        .serve_fn("echo", move |_method, params| {
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(params)
        })
        .expect("serve");
    let client = plexus_client::blocking::Client::connect_to(&addr).expect("client");
    let mut sub = client.subscribe("blocking.*").expect("subscribe");
    let echoed: Value = client.call("echo", "x", &json!([1, 2, 3])).expect("call");
    assert_eq!(echoed, json!([1, 2, 3]));
    client
        .publish("blocking.event", &json!("hi"))
        .expect("publish");
    let event = sub.recv_timeout(WAIT).expect("event");
    assert_eq!(event.json::<String>().expect("string"), "hi");
    client.wait_for(&["echo"], WAIT).expect("present");
    assert_eq!(served.load(Ordering::Relaxed), 1);
    drop((client, worker, sub));
    drop(broker);
}

#[tokio::test]
async fn the_examples_run_against_the_broker() {
    let broker = TestBroker::start().await;
    let examples = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.parent()
                .and_then(|deps| deps.parent())
                .map(|d| d.join("examples"))
        })
        .expect("examples dir");
    let run = |name: &str| {
        let mut cmd = tokio::process::Command::new(examples.join(name));
        cmd.env("PLEXUS_BUS", broker.addr())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        cmd
    };
    let mut worker = run("calculator_worker").spawn().expect("worker example");
    let client = broker.client().await;
    client
        .wait_for(&["math"], WAIT)
        .await
        .expect("worker registered");
    let mut subscriber = run("subscriber").spawn().expect("subscriber example");
    let out = tokio::time::timeout(WAIT, run("calculator_client").output())
        .await
        .expect("in time")
        .expect("client example");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"sum":42}"#);

    let stdout = subscriber.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let ready = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("ready")
        .expect("read");
    assert_eq!(ready.as_deref(), Some("listening on sensor.>"));
    let out = tokio::time::timeout(WAIT, run("publisher").output())
        .await
        .expect("in time")
        .expect("publisher example");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "published to 1 subscriber(s)"
    );
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("event line")
        .expect("read");
    assert_eq!(line.as_deref(), Some("sensor.temperature \"25.6°C\""));
    let _ = worker.kill().await;
    let _ = subscriber.kill().await;
}
