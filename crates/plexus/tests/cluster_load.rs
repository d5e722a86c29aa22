//! Brokers federated through NATS under load (issue 16): a subscriber on another broker that
//! does not read loses events counted and told, as a local one does; NATS delivering faster than
//! a broker routes drops events counted, never silently; and the cluster link has a quota bucket
//! of its own. Real `plexus` brokers, real `nats-server`, real clients; `docs/scaling.md` says
//! what each test proves.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_client::{Client, Error};
use plexus_proto::{ErrorCode, Kind};
use serde_json::{Value, json};
use support::nats::{Nats, await_joined, bus_client, cluster_broker, free_port, stats};
use support::process::BrokerProc;
use support::raw::{Conn, Next};
use support::{PROMPT, WAIT};

/// A broker joining cluster `test` through `nats` as `node`, with `config` (TOML) and `args`.
fn broker(nats: &Nats, node: &str, config: &str, args: &[&str]) -> BrokerProc {
    cluster_broker(&nats.url(0), node, config, args)
}

/// The next event of `sub` within [`WAIT`].
async fn next_event(sub: &mut plexus_client::Subscription, who: &str) -> plexus_client::Event {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap_or_else(|_| panic!("{who} got no event in time"))
        .expect("subscription open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_subscriber_that_does_not_read_loses_events_counted_and_told() {
    let nats = Nats::start(1);
    let a = broker(&nats, "A", "", &[]);
    // Small outboxes on B, so that a subscriber that does not read fills its own soon.
    let b = broker(&nats, "B", "max_frame = 65536\noutbox_limit = 65536\n", &[]);
    await_joined(&a).await;
    await_joined(&b).await;

    let reader_b = bus_client(&b.addr(), "reader-b").await;
    let mut sub_b = reader_b.subscribe("flood").await.expect("subscribe on B");
    let reader_a = bus_client(&a.addr(), "reader-a").await;
    let mut sub_a = reader_a.subscribe("flood").await.expect("subscribe on A");
    let publisher = bus_client(&a.addr(), "publisher").await;
    // Until B's event subscription is known to NATS, events may go nowhere: probe until B's
    // reader has one; the slow subscriber subscribes after the probes.
    let deadline = Instant::now() + WAIT;
    loop {
        publisher
            .publish("flood", &json!({ "probe": true }))
            .await
            .expect("publish");
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), sub_b.next()).await {
            break;
        }
        assert!(Instant::now() < deadline, "events never reached B");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), sub_b.next()).await {}
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), sub_a.next()).await {}
    let mut slow = Conn::hello(&b.socket, "slow").await;
    slow.subscribe(1, "flood").await;
    let on_b = bus_client(&b.addr(), "stats-b").await;
    let before = stats(&on_b).await;

    const N: u64 = 200;
    let pad = "x".repeat(8 * 1024);
    for seq in 0..N {
        let started = Instant::now();
        publisher
            .publish("flood", &json!({ "seq": seq, "pad": pad }))
            .await
            .expect("publish");
        assert!(
            started.elapsed() < PROMPT,
            "the publisher was held up {:?} by a subscriber on another broker",
            started.elapsed()
        );
        // The reading subscribers on both brokers get every event, none dropped.
        for (sub, who) in [(&mut sub_a, "A's reader"), (&mut sub_b, "B's reader")] {
            let event = next_event(sub, who).await;
            let body: Value = event.json().expect("json");
            assert_eq!(body["seq"], seq, "{who} got the events in order");
            assert_eq!(event.dropped, 0, "{who} lost nothing");
        }
    }

    let after = stats(&on_b).await;
    let dropped_on_b = after["events_dropped"].as_u64().unwrap_or(0)
        - before["events_dropped"].as_u64().unwrap_or(0);
    assert!(
        dropped_on_b > 0,
        "the slow subscriber's outbox on B overflowed: {after}"
    );
    assert_eq!(after["cluster"]["events_in_dropped"], 0, "{after}");
    let on_a = stats(&publisher).await;
    assert_eq!(on_a["events_dropped"], 0, "nothing dropped on A: {on_a}");
    assert_eq!(on_a["cluster"]["events_out_dropped"], 0, "{on_a}");

    // The slow subscriber reads again: what it got plus what it was told it lost is everything.
    let (mut received, mut told) = (0u64, 0u64);
    loop {
        match slow.next_frame(Duration::from_millis(500)).await {
            Next::Got(frame) => {
                assert_eq!(frame.kind(), Kind::Event, "{frame:?}");
                told += u64::from(frame.aux());
                received += 1;
            }
            Next::TimedOut => break,
            Next::Closed => panic!("the broker closed the slow subscriber"),
        }
    }
    publisher
        .publish("flood", &json!({ "last": true }))
        .await
        .expect("publish");
    let last = match slow.next_frame(WAIT).await {
        Next::Got(frame) => frame,
        other => panic!("the slow subscriber got no last event: {other:?}"),
    };
    told += u64::from(last.aux());
    assert_eq!(
        told, dropped_on_b,
        "every drop on B is told to the subscriber"
    );
    assert_eq!(
        received + told,
        N,
        "received {received} and told of {told} lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_delivering_faster_than_a_broker_routes_drops_events_counted() {
    let nats = Nats::start(1);
    let b = broker(&nats, "B", "", &[]);
    await_joined(&b).await;
    let worker = bus_client(&b.addr(), "worker").await;
    worker
        .serve_fn("svc", |_, params, _| async move { Ok(params) })
        .await
        .expect("register svc");
    // Each event from NATS goes to 100 subscriptions here, so B routes it far slower than NATS
    // delivers it.
    let mut many = Conn::hello(&b.socket, "many").await;
    for id in 1..=100 {
        many.subscribe(id, "flood.fast").await;
    }
    let on_b = bus_client(&b.addr(), "stats").await;
    let before = stats(&on_b).await;

    let flooder = async_nats::connect(nats.url(0)).await.expect("NATS client");
    // Calls to B's `svc` in the middle of the flood, as another broker sends them: they have a
    // queue of their own at the link, so the events do not crowd them out.
    const N: u64 = 5_000;
    const EVERY: u64 = 250;
    let mut calls = tokio::task::JoinSet::new();
    for seq in 0..N {
        flood_event(&flooder, seq).await;
        if seq % EVERY == EVERY / 2 {
            calls.spawn(call_svc(flooder.clone(), seq));
        }
    }
    flooder.flush().await.expect("flush");
    let (answered, refused) = answers(&mut calls).await;
    assert_eq!((answered, refused), (N / EVERY, 0), "calls amid events");
    // A burst of calls while the link is busy: what does not fit in its queue of calls is
    // refused `overloaded` at once; none is lost.
    const BURST: u64 = 3_000;
    for seq in 0..BURST {
        calls.spawn(call_svc(flooder.clone(), seq));
    }
    let (answered, refused) = answers(&mut calls).await;
    assert_eq!(answered + refused, BURST);
    assert!(refused > 0, "no call of the burst met a full queue");
    eprintln!("of a burst of {BURST} calls from NATS, B answered {answered} and refused {refused}");

    // Every event B's NATS client received is routed or counted as dropped: none vanishes.
    let counted = |s: &Value| {
        let c = &s["cluster"];
        ["events_in", "events_in_dropped", "messages_in_dropped"]
            .iter()
            .map(|k| c[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let s = stats(&on_b).await;
        if counted(&s) - counted(&before) >= N {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "B accounted for {} of {N} events: {}",
            counted(&s) - counted(&before),
            s["cluster"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let cluster = &after["cluster"];
    assert_eq!(
        counted(&after) - counted(&before),
        N,
        "each event counted once: {cluster}"
    );
    let dropped = cluster["events_in_dropped"].as_u64().unwrap_or(0);
    assert!(
        dropped > 0,
        "NATS delivered faster than B routes, yet nothing was dropped at the link: {cluster}"
    );
    let routed = cluster["events_in"].as_u64().unwrap_or(0)
        - before["cluster"]["events_in"].as_u64().unwrap_or(0);
    eprintln!("of {N} events from NATS, B routed {routed} and dropped {dropped} at the link");
    assert_eq!(
        cluster["calls_in_refused"].as_u64().unwrap_or(0)
            - before["cluster"]["calls_in_refused"].as_u64().unwrap_or(0),
        refused,
        "{cluster}"
    );
    let published = after["events_published"].as_u64().unwrap_or(0)
        - before["events_published"].as_u64().unwrap_or(0);
    assert_eq!(published, routed, "every event the link took was routed");

    // B still serves: a call and a publish on B work at once.
    let pong: Value = on_b
        .call("plexus", "ping", &Value::Null)
        .await
        .expect("B answers");
    assert!(!pong.is_null());
    b.assert_alive("the flood from NATS");
}

/// Publishes event `seq` on `flood.fast` of cluster `test` straight to NATS, as another broker.
async fn flood_event(nats: &async_nats::Client, seq: u64) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Plexus-Origin", "X");
    nats.publish_with_headers(
        "plexus.test.event.flood.fast",
        headers,
        format!("{seq}").into(),
    )
    .await
    .expect("publish to NATS");
}

/// Calls `svc.echo` of cluster `test` with `seq` straight through NATS, as another broker:
/// the params and the answer.
async fn call_svc(nats: async_nats::Client, seq: u64) -> (String, async_nats::Message) {
    let params = format!("{seq}");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Plexus-Timeout", "15000");
    let request = async_nats::Request::new()
        .headers(headers)
        .payload(params.clone().into())
        .timeout(Some(Duration::from_secs(20)));
    let answer = nats
        .send_request("plexus.test.call.svc.echo", request)
        .await
        .expect("every call is answered");
    (params, answer)
}

/// Waits for every call: how many were answered with their params, and how many refused
/// `overloaded`; anything else fails the test.
async fn answers(calls: &mut tokio::task::JoinSet<(String, async_nats::Message)>) -> (u64, u64) {
    let (mut answered, mut refused) = (0, 0);
    while let Some(done) = calls.join_next().await {
        let (params, answer) = done.expect("call task");
        let header = |name: &str| {
            answer
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        match header("Plexus-Answer").as_deref() {
            Some("reply") => {
                assert_eq!(&answer.payload[..], params.as_bytes());
                answered += 1;
            }
            Some("error") => {
                assert_eq!(
                    header("Plexus-Aux"),
                    Some(ErrorCode::Overloaded.code().to_string()),
                    "{answer:?}"
                );
                refused += 1;
            }
            other => panic!("not a plexus answer: {other:?} {answer:?}"),
        }
    }
    (answered, refused)
}

/// A gate a worker's calls wait on, opened by the test.
type Gate = tokio::sync::watch::Sender<bool>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_link_has_its_own_quota_bucket() {
    let nats = Nats::start(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        r#"[[allow]]
who = ["*", "anonymous"]
own = [">"]
join = [">"]
call = [">"]
publish = [">"]
subscribe = [">"]

[quotas]
pending_calls = 2

[quotas.cluster]
pending_calls = 3
"#,
    )
    .expect("write policy");
    let port = free_port();
    let tcp = format!("127.0.0.1:{port}");
    let a = broker(&nats, "A", "", &[]);
    let b = broker(
        &nats,
        "B",
        &format!("policy = \"{}\"\n", policy.display()),
        &["--tcp", &tcp],
    );
    await_joined(&a).await;
    await_joined(&b).await;

    // The worker on B: `hold` waits until the gate its params name opens; `quick` answers.
    let gates: Arc<[Gate; 2]> = Arc::new([
        tokio::sync::watch::channel(false).0,
        tokio::sync::watch::channel(false).0,
    ]);
    let worker = bus_client(&b.addr(), "worker").await;
    {
        let gates = gates.clone();
        worker
            .serve_fn("gate", move |method, params, _ctx| {
                let gates = gates.clone();
                async move {
                    if method == "hold" {
                        let i = params.as_u64().unwrap_or(0).min(1) as usize;
                        let mut open = gates[i].subscribe();
                        let _ = open.wait_for(|o| *o).await;
                    }
                    Ok(json!(method))
                }
            })
            .await
            .expect("register gate");
    }
    const LOCAL: u64 = 0;
    const REMOTE: u64 = 1;

    // Anonymous peers on B (TCP, no token) use up their two pending calls.
    let tcp_addr = format!("tcp://{tcp}");
    let anonymous = bus_client(&tcp_addr, "anonymous").await;
    let mut local_holds = Vec::new();
    for _ in 0..2 {
        let c = anonymous.clone();
        local_holds.push(tokio::spawn(async move {
            c.call::<_, Value>("gate", "hold", &json!(LOCAL)).await
        }));
    }
    await_pending(&worker, 2).await;
    let err = refused(&anonymous).await;
    assert!(
        err.to_string().contains("anonymous peers")
            && err.to_string().contains("quotas.pending_calls = 2"),
        "{err}"
    );

    // Calls from another broker have their own bucket: A's caller is not refused.
    let caller = bus_client(&a.addr(), "remote").await;
    let deadline = Instant::now() + WAIT;
    loop {
        match caller.call::<_, Value>("gate", "quick", &Value::Null).await {
            Ok(v) => {
                assert_eq!(v, "quick");
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::NoSuchObject, "{e}");
                assert!(Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // ... up to three waiting at once (quotas.cluster), then refused naming that quota.
    let mut remote_holds = Vec::new();
    for _ in 0..3 {
        let c = caller.clone();
        remote_holds.push(tokio::spawn(async move {
            c.call::<_, Value>("gate", "hold", &json!(REMOTE)).await
        }));
    }
    await_pending(&worker, 5).await;
    let err = refused(&caller).await;
    assert!(
        err.to_string().contains("cluster link")
            && err.to_string().contains("quotas.cluster.pending_calls = 3"),
        "{err}"
    );

    // Vice versa: with other brokers' calls at their limit, local peers are not held back.
    gates[0].send_replace(true);
    for hold in local_holds {
        let v = hold.await.expect("task").expect("the local holds end");
        assert_eq!(v, "hold");
    }
    let v: Value = anonymous
        .call("gate", "quick", &Value::Null)
        .await
        .expect("a local call while the cluster's bucket is full");
    assert_eq!(v, "quick");
    gates[1].send_replace(true);
    for hold in remote_holds {
        let v = hold.await.expect("task").expect("the remote holds end");
        assert_eq!(v, "hold");
    }
    let s = stats(&worker).await;
    assert!(s["quota_exceeded"].as_u64() >= Some(2), "{s}");
}

/// Waits until `n` calls wait for answers on the broker `client` is connected to.
async fn await_pending(client: &Client, n: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = stats(client).await;
        if s["pending_calls"].as_u64() == Some(n) {
            return;
        }
        assert!(Instant::now() < deadline, "{n} calls never waited: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls `gate.quick`, which must be refused `overloaded`; the error.
async fn refused(client: &Client) -> Error {
    let err = client
        .call::<_, Value>("gate", "quick", &Value::Null)
        .await
        .expect_err("over the quota");
    assert_eq!(err.code(), ErrorCode::Overloaded, "{err}");
    err
}
