//! Brokers federated through NATS (issue 16), with the real `plexus` binary and real
//! `nats-server` processes on loopback ports, each test its own servers: three brokers on their
//! own sockets, attached to different servers of a three-server NATS cluster (three, so that
//! JetStream keeps its quorum, and the name store its replicas, while one server is down).
//! `docs/scaling.md` says what each test proves.

mod support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plexus_client::{Client, Error};
use plexus_proto::ErrorCode;
use serde_json::{Value, json};
use support::nats::{Nats, cluster_args};
use support::process::{BrokerProc, EchoProc, kill_and_reap, plexus_bin};
use support::{PROMPT, WAIT};

/// How long a JetStream cluster may take to elect its leaders and the brokers to open the name
/// store.
const READY: Duration = Duration::from_secs(60);
/// The call timeout the tests use where an error must come before it (promptly).
const LONG: Duration = Duration::from_secs(20);

/// Three NATS servers and brokers A, B, C attached to servers 0, 1, 2.
struct Three {
    nats: Nats,
    brokers: Vec<BrokerProc>,
}

impl Three {
    async fn start() -> Three {
        let nats = Nats::start(3);
        let brokers: Vec<BrokerProc> = ["A", "B", "C"]
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let args = cluster_args(&nats.url(i), node, 3);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                BrokerProc::start(&args)
            })
            .collect();
        for b in &brokers {
            await_ready(b).await;
        }
        Three { nats, brokers }
    }

    fn a(&self) -> &BrokerProc {
        &self.brokers[0]
    }
    fn b(&self) -> &BrokerProc {
        &self.brokers[1]
    }
    fn c(&self) -> &BrokerProc {
        &self.brokers[2]
    }
}

async fn client(broker: &BrokerProc, name: &str) -> Client {
    Client::builder()
        .address(broker.addr())
        .name(name)
        .call_timeout(LONG)
        .connect()
        .await
        .expect("connect")
}

/// The `cluster` part of a broker's `plexus.stats`.
async fn cluster_stats(client: &Client) -> Value {
    let stats: Value = client
        .call("plexus", "stats", &Value::Null)
        .await
        .expect("plexus.stats");
    stats["cluster"].clone()
}

/// Waits until the broker is connected to NATS and its name store is open.
async fn await_ready(broker: &BrokerProc) {
    let c = client(broker, "ready").await;
    let deadline = Instant::now() + READY;
    loop {
        let s = cluster_stats(&c).await;
        if s["nats"] == "connected" && s["name_store"] == "ready" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the broker did not join the cluster in time: {s}\n{}",
            broker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Calls until the call succeeds (the name may not have reached the caller's NATS server yet);
/// fails the test after [`WAIT`].
async fn call_until_ok(client: &Client, object: &str, params: &[u8]) -> bytes::Bytes {
    let deadline = Instant::now() + WAIT;
    loop {
        match client.call_raw(object, "echo", params, PROMPT).await {
            Ok(result) => return result,
            Err(e) => assert!(
                Instant::now() < deadline,
                "a call to '{object}' still fails: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The error of a call expected to fail within [`PROMPT`] (its timeout is [`LONG`]).
async fn prompt_error(client: &Client, object: &str) -> Error {
    let started = Instant::now();
    let err = client
        .call_raw(object, "echo", b"1", LONG)
        .await
        .expect_err("the call must fail");
    assert!(
        started.elapsed() < PROMPT,
        "the error came after {:?}, as if waiting for a timeout: {err}",
        started.elapsed()
    );
    err
}

/// Waits until `client` can register `name` (exclusively), and keeps serving it.
async fn serve_echo(client: &Client, name: &str, node: &'static str) {
    client
        .serve_fn(name, move |method, params, _ctx| async move {
            Ok(json!({ "node": node, "method": method, "params": params }))
        })
        .await
        .expect("register");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cross_brokers_and_exclusive_names_stay_exclusive() {
    let three = Three::start().await;
    let _echo = EchoProc::start(&three.b().addr(), "calc.svc", false);
    let on_a = client(three.a(), "caller").await;
    let params = br#"{"x":[1,2,"three",{"y":"\u00e9"}]}"#;
    let result = call_until_ok(&on_a, "calc.svc", params).await;
    let on_b = client(three.b(), "local-caller").await;
    let local = on_b
        .call_raw("calc.svc", "echo", params, PROMPT)
        .await
        .expect("local call");
    assert_eq!(
        result, local,
        "a remote caller gets the very bytes a local one gets"
    );
    let blob = format!("\"{}\"", "z".repeat(200_000));
    let result = on_a
        .call_raw("calc.svc", "echo", blob.as_bytes(), PROMPT)
        .await
        .expect("a 200 kB call");
    assert_eq!(&result[..], blob.as_bytes());

    let err = prompt_error(&on_a, "nobody.here").await;
    assert_eq!(err.code(), ErrorCode::NoSuchObject, "{err}");

    let on_c = client(three.c(), "contender").await;
    let err = on_c
        .serve_fn("calc.svc", |_, _, _| async { Ok(Value::Null) })
        .await
        .expect_err("C must not take a name B holds");
    assert_eq!(err.code(), ErrorCode::NameTaken, "{err}");
    assert!(err.to_string().contains("'B'"), "names the holder: {err}");

    let names: Value = on_a
        .call("plexus.cluster", "names", &Value::Null)
        .await
        .expect("plexus.cluster.names");
    assert!(
        names.as_array().is_some_and(
            |n| n.contains(&json!({"name": "calc.svc", "kind": "exclusive", "node": "B"}))
        ),
        "{names}"
    );
    let out = Command::new(plexus_bin())
        .args(["--bus", &three.a().addr(), "list", "--cluster"])
        .stderr(Stdio::inherit())
        .output()
        .expect("plexus list --cluster");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("calc.svc") && l.contains('B')),
        "plexus list --cluster shows the name with its broker:\n{text}"
    );

    // The caller's timeout carries over to the broker that serves the call.
    on_b.serve_fn("slow.svc", |_, _, _| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(Value::Null)
    })
    .await
    .expect("register slow.svc");
    call_until_found(&on_a, "slow.svc").await;
    let started = Instant::now();
    let err = on_a
        .call_raw("slow.svc", "wait", b"null", Duration::from_millis(500))
        .await
        .expect_err("times out");
    assert_eq!(err.code(), ErrorCode::Timeout, "{err}");
    assert!(started.elapsed() < PROMPT);

    // A caller that gives up cancels the call at the worker on the other broker, long before
    // the call's own timeout would have.
    let (cancelled_tx, cancelled_rx) = tokio::sync::oneshot::channel::<()>();
    let cancelled_tx = Arc::new(Mutex::new(Some(cancelled_tx)));
    on_b.serve_fn("cancel.me", move |method, _, ctx| {
        let cancelled_tx = cancelled_tx.clone();
        async move {
            if method != "wait" {
                return Ok(Value::Null);
            }
            ctx.cancelled().await;
            if let Some(tx) = cancelled_tx.lock().expect("lock").take() {
                let _ = tx.send(());
            }
            Ok(Value::Null)
        }
    })
    .await
    .expect("register cancel.me");
    call_until_found(&on_a, "cancel.me").await;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        on_a.call_raw("cancel.me", "wait", b"null", LONG),
    )
    .await;
    assert!(gave_up.is_err(), "the call was still running");
    tokio::time::timeout(PROMPT, cancelled_rx)
        .await
        .expect("the worker on B was told the caller on A gave up")
        .expect("sender kept");

    let stats = cluster_stats(&on_a).await;
    assert!(stats["calls_out"].as_u64() >= Some(2), "{stats}");
    assert!(
        stats["remote_calls_answered"].as_u64() >= Some(1),
        "{stats}"
    );
}

/// Waits until a call to `object` no longer fails `no_such_object` (whatever else it does).
async fn call_until_found(client: &Client, object: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        match client
            .call_raw(object, "probe", b"null", Duration::from_millis(200))
            .await
        {
            Err(e) if e.code() == ErrorCode::NoSuchObject => {
                assert!(Instant::now() < deadline, "'{object}' never appeared: {e}")
            }
            _ => return,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_name_spreads_calls_over_brokers() {
    let three = Three::start().await;
    // Which worker got calls from which caller.
    let seen: Arc<Mutex<HashMap<(&'static str, String), u32>>> = Arc::default();
    let mut workers = Vec::new();
    for (broker, node) in [(three.a(), "A"), (three.b(), "B")] {
        let worker = client(broker, "worker").await;
        let seen = seen.clone();
        worker
            .serve_shared(
                "pool",
                plexus_client::FnObject(move |_method: String, params: Value, _ctx| {
                    let seen = seen.clone();
                    async move {
                        let from = params["from"].as_str().unwrap_or("?").to_owned();
                        *seen.lock().expect("lock").entry((node, from)).or_default() += 1;
                        Ok(json!(node))
                    }
                }),
            )
            .await
            .expect("join the group");
        workers.push(worker);
    }
    let callers = [
        (client(three.a(), "caller").await, "A"),
        (client(three.b(), "caller").await, "B"),
    ];
    for (caller, _) in &callers {
        call_until_found(caller, "pool").await;
    }
    seen.lock().expect("lock").clear();
    for round in 0..40 {
        for (caller, from) in &callers {
            let node: Value = caller
                .call("pool", "work", &json!({ "from": from, "round": round }))
                .await
                .expect("a call to the group");
            assert!(node == "A" || node == "B", "{node}");
        }
    }
    let seen = seen.lock().expect("lock").clone();
    for worker in ["A", "B"] {
        for from in ["A", "B"] {
            assert!(
                seen.get(&(worker, from.to_owned())).copied().unwrap_or(0) > 0,
                "the worker on {worker} got no call from {from}'s caller: {seen:?}"
            );
        }
    }
    assert_eq!(
        seen.values().sum::<u32>(),
        80,
        "every call ran once: {seen:?}"
    );
    drop(workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_reaches_every_broker_exactly_once() {
    let three = Three::start().await;
    let mut subs = Vec::new();
    let mut clients = Vec::new();
    for b in &three.brokers {
        let c = client(b, "listener").await;
        subs.push(c.subscribe("sensor.>").await.expect("subscribe"));
        clients.push(c);
    }
    let on_a = client(three.a(), "publisher").await;
    // Until every broker's event subscription is known to every server, early events may go
    // nowhere: probe until each subscriber has one, then count from a clean slate.
    let deadline = Instant::now() + WAIT;
    for sub in &mut subs {
        loop {
            on_a.publish("sensor.probe", &json!("probe"))
                .await
                .expect("publish");
            if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await
            {
                break;
            }
            assert!(Instant::now() < deadline, "events never reached a broker");
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for sub in &mut subs {
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
        }
    }
    const N: u64 = 100;
    for seq in 0..N {
        on_a.publish("sensor.temp", &json!({ "seq": seq }))
            .await
            .expect("publish");
    }
    for (sub, node) in subs.iter_mut().zip(["A", "B", "C"]) {
        let mut got = Vec::new();
        while (got.len() as u64) < N {
            let event = tokio::time::timeout(WAIT, sub.next())
                .await
                .unwrap_or_else(|_| panic!("{node} got only {} of {N} events", got.len()))
                .expect("subscription open");
            let body: Value = event.json().expect("json");
            got.push(body["seq"].as_u64().expect("seq"));
        }
        // No duplicate arrives late either.
        let extra = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
        assert!(extra.is_err(), "{node} got an extra event: {extra:?}");
        got.sort_unstable();
        assert_eq!(
            got,
            (0..N).collect::<Vec<_>>(),
            "{node} got each event once"
        );
    }
    let stats = cluster_stats(&on_a).await;
    assert!(stats["events_out"].as_u64() >= Some(N), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_fails_its_remote_callers_promptly() {
    let three = Three::start().await;
    let mut slow = Command::new(plexus_bin())
        .args([
            "--bus",
            &three.b().addr(),
            "serve",
            "slow.job",
            "--",
            "sleep",
            "60",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("plexus serve");
    let on_a = client(three.a(), "caller").await;
    call_until_found(&on_a, "slow.job").await;
    let call = {
        let on_a = on_a.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let r = on_a.call_raw("slow.job", "run", b"null", LONG).await;
            (r, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill_and_reap(&mut slow);
    let (result, elapsed) = tokio::time::timeout(LONG, call)
        .await
        .expect("answered before the call's timeout")
        .expect("task");
    let err = result.expect_err("the worker died");
    assert_eq!(err.code(), ErrorCode::WorkerGone, "{err}");
    assert!(elapsed < PROMPT + Duration::from_millis(500), "{elapsed:?}");
    // And the name is gone from the cluster: the next call fails at once.
    let deadline = Instant::now() + WAIT;
    loop {
        let err = prompt_error(&on_a, "slow.job").await;
        if err.code() == ErrorCode::NoSuchObject {
            break;
        }
        assert!(Instant::now() < deadline, "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_recovers_after_a_nats_server_restarts() {
    let mut three = Three::start().await;
    let _echo = EchoProc::start(&three.b().addr(), "calc.svc", false);
    let on_a = client(three.a(), "caller").await;
    call_until_ok(&on_a, "calc.svc", b"1").await;
    let on_b = client(three.b(), "checker").await;
    let before = cluster_stats(&on_b).await["connects"].as_u64();

    three.nats.kill(1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    three.nats.restart(1);
    // B reconnects (to its server or another it learnt of) and re-announces by itself.
    let deadline = Instant::now() + READY;
    loop {
        let s = cluster_stats(&on_b).await;
        if s["nats"] == "connected" && s["connects"].as_u64() > before {
            break;
        }
        assert!(Instant::now() < deadline, "B did not reconnect: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    call_until_ok(&on_a, "calc.svc", b"2").await;
    // The name is still B's, cluster-wide.
    let on_c = client(three.c(), "contender").await;
    let err = on_c
        .serve_fn("calc.svc", |_, _, _| async { Ok(Value::Null) })
        .await
        .expect_err("still B's");
    assert_eq!(err.code(), ErrorCode::NameTaken, "{err}");
    // Events flow again from B.
    let mut sub = on_a.subscribe("after.restart").await.expect("subscribe");
    let deadline = Instant::now() + WAIT;
    loop {
        on_b.publish("after.restart", &json!(1))
            .await
            .expect("publish");
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "events from B never reached A again"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_down_local_traffic_works_and_remote_calls_are_unavailable() {
    let mut nats = Nats::start(1);
    let a = BrokerProc::start(
        &cluster_args(&nats.url(0), "A", 1)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let b = BrokerProc::start(
        &cluster_args(&nats.url(0), "B", 1)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    await_ready(&a).await;
    await_ready(&b).await;
    let on_a = client(&a, "local").await;
    serve_echo(&on_a, "local.svc", "A").await;
    let on_b = client(&b, "remote").await;
    serve_echo(&on_b, "remote.svc", "B").await;
    call_until_found(&on_a, "remote.svc").await;

    nats.kill(0);
    let deadline = Instant::now() + WAIT;
    while cluster_stats(&on_a).await["nats"] == "connected" {
        assert!(Instant::now() < deadline, "A did not notice NATS went away");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let local: Value = on_a
        .call("local.svc", "hello", &json!(1))
        .await
        .expect("local calls keep working");
    assert_eq!(local["node"], "A");
    let err = prompt_error(&on_a, "remote.svc").await;
    assert_eq!(err.code(), ErrorCode::Unavailable, "{err}");
    let err = on_a
        .serve_fn("new.name", |_, _, _| async { Ok(Value::Null) })
        .await
        .expect_err("no new exclusive name without the name store");
    assert_eq!(err.code(), ErrorCode::Unavailable, "{err}");

    nats.restart(0);
    let deadline = Instant::now() + READY;
    loop {
        match on_a.call_raw("remote.svc", "hello", b"2", PROMPT).await {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "remote calls did not recover: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    serve_echo(&on_a, "new.name", "A").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_limit_what_other_brokers_see_and_a_dead_brokers_names_expire() {
    let nats = Nats::start(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("b.toml");
    std::fs::write(
        &config,
        "cluster_export_names = [\"public.>\"]\ncluster_export_topics = [\"shared.>\"]\n",
    )
    .expect("write config");
    let mut b_args = cluster_args(&nats.url(0), "B", 1);
    b_args.extend(["--config".to_owned(), config.display().to_string()]);
    let a = BrokerProc::start(
        &cluster_args(&nats.url(0), "A", 1)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let b = BrokerProc::start(&b_args.iter().map(String::as_str).collect::<Vec<_>>());
    await_ready(&a).await;
    await_ready(&b).await;
    let on_b = client(&b, "worker").await;
    serve_echo(&on_b, "public.svc", "B").await;
    serve_echo(&on_b, "private.svc", "B").await;
    let on_a = client(&a, "caller").await;
    call_until_found(&on_a, "public.svc").await;
    let err = prompt_error(&on_a, "private.svc").await;
    assert_eq!(err.code(), ErrorCode::NoSuchObject, "not exported: {err}");
    // Not exported means not claimed: A may have a name of its own by that name.
    serve_echo(&on_a, "private.svc", "A").await;

    // A call too large for one NATS message is refused, naming the limit.
    let big = format!("\"{}\"", "x".repeat(2 << 20));
    let err = on_a
        .call_raw("public.svc", "echo", big.as_bytes(), PROMPT)
        .await
        .expect_err("over max_payload");
    assert_eq!(err.code(), ErrorCode::FrameTooLarge, "{err}");
    assert!(err.to_string().contains("max_payload"), "{err}");

    // Only exported topics leave B.
    let mut sub = on_a.subscribe(">").await.expect("subscribe");
    let deadline = Instant::now() + WAIT;
    loop {
        on_b.publish("shared.t", &json!("s"))
            .await
            .expect("publish");
        if let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await
        {
            assert_eq!(event.topic, "shared.t");
            break;
        }
        assert!(Instant::now() < deadline, "exported events never arrived");
    }
    on_b.publish("local.t", &json!("l")).await.expect("publish");
    on_b.publish("shared.last", &json!("s"))
        .await
        .expect("publish");
    let mut topics = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
        topics.push(String::from(event.topic));
    }
    assert!(topics.contains(&"shared.last".to_owned()), "{topics:?}");
    assert!(!topics.iter().any(|t| t == "local.t"), "{topics:?}");

    // B dies: its names are gone from the cluster within the lease (3 s), and A may take them.
    b.stop_with(rustix::process::Signal::KILL);
    let err = prompt_error(&on_a, "public.svc").await;
    assert_eq!(err.code(), ErrorCode::NoSuchObject, "{err}");
    let started = Instant::now();
    loop {
        match on_a
            .serve_fn("public.svc", |_, _, _| async { Ok(json!("A")) })
            .await
        {
            Ok(()) => break,
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::NameTaken, "{e}");
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "B's claim outlived its 3 s lease: {e}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let names: Value = on_a
        .call("plexus.cluster", "names", &Value::Null)
        .await
        .expect("names");
    assert!(
        names.as_array().is_some_and(
            |n| n.contains(&json!({"name": "public.svc", "kind": "exclusive", "node": "A"}))
        ),
        "{names}"
    );
}
