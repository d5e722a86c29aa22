//! Chaos against the real `plexus broker` process (issue 11, "Proving it"): worker processes
//! killed and restarted at random while clients make 20,000 calls, and the broker itself killed
//! and restarted under connected Rust clients. Every call gets exactly one answer, none hangs,
//! and nothing is answered twice. `docs/security.md` ("Proving it") says what each test proves.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_client::{Client, Error};
use plexus_proto::{ErrorCode, Frame, Kind};
use serde_json::{Value, json};
use support::process::{BrokerProc, EchoProc};
use support::raw::{Conn, Next};
use support::{Rng, WAIT};

/// The queue group the chaos workers serve.
const GROUP: &str = "chaos";
/// Raw callers, each making [`CALLS_PER_CALLER`] calls with up to [`WINDOW`] open at once.
const CALLERS: u64 = 4;
const CALLS_PER_CALLER: u64 = 5_000;
const WINDOW: u64 = 32;
/// The timeout of each chaos call: the broker must answer `timeout` by then at the latest.
const CALL_TIMEOUT_MS: u32 = 2_000;

/// Sets its flag when dropped: stops the killer thread even when the test fails, so that it
/// kills its workers and starts no more.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// How one caller's calls were answered.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    ok: u64,
    worker_gone: u64,
    no_such_object: u64,
    timeout: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.ok += other.ok;
        self.worker_gone += other.worker_gone;
        self.no_such_object += other.no_such_object;
        self.timeout += other.timeout;
    }

    fn total(&self) -> u64 {
        self.ok + self.worker_gone + self.no_such_object + self.timeout
    }
}

/// Makes [`CALLS_PER_CALLER`] calls to [`GROUP`] over a raw native connection, each with its own
/// id and its id as params, and checks every answer as it comes: an id this caller used and
/// left open, answered once, with its own params as the result or with `worker_gone`,
/// `no_such_object` or `timeout`. Fails if no answer comes within [`WAIT`] while calls are open.
async fn caller(socket: std::path::PathBuf, k: u64) -> (Tally, Conn) {
    let mut c = Conn::hello(&socket, &format!("chaos-caller-{k}")).await;
    let mut answered = vec![0u8; CALLS_PER_CALLER as usize + 1];
    let (mut next, mut open) = (1u64, 0u64);
    let mut tally = Tally::default();
    while next <= CALLS_PER_CALLER || open > 0 {
        let mut batch = Vec::new();
        while next <= CALLS_PER_CALLER && open < WINDOW {
            let params = next.to_string();
            let call = Frame::call(next, GROUP, "echo", CALL_TIMEOUT_MS, params.as_bytes());
            batch.extend_from_slice(&call.to_bytes());
            next += 1;
            open += 1;
        }
        if !batch.is_empty() {
            c.send_bytes(&batch).await;
        }
        let f = match c.next_frame(WAIT).await {
            Next::Got(f) => f,
            Next::Closed => {
                panic!("caller {k}: the broker closed the connection with {open} calls open")
            }
            Next::TimedOut => {
                panic!("caller {k}: no answer within {WAIT:?} while {open} calls were open")
            }
        };
        let id = f.id();
        assert!(
            (1..next).contains(&id),
            "caller {k}: an answer to id {id}, which it never used: {f:?}"
        );
        answered[id as usize] += 1;
        assert_eq!(
            answered[id as usize], 1,
            "caller {k}: call {id} answered twice: {f:?}"
        );
        open -= 1;
        match f.kind() {
            Kind::Reply => {
                assert_eq!(
                    &f.payload()[..],
                    id.to_string().as_bytes(),
                    "caller {k}: call {id} got another call's result"
                );
                tally.ok += 1;
            }
            Kind::Error => match f.error_code() {
                ErrorCode::WorkerGone => tally.worker_gone += 1,
                ErrorCode::NoSuchObject => tally.no_such_object += 1,
                ErrorCode::Timeout => tally.timeout += 1,
                other => panic!("caller {k}: call {id} answered {other}: {}", f.string(0)),
            },
            other => panic!("caller {k}: a {other:?} frame where an answer was due: {f:?}"),
        }
    }
    (tally, c)
}

/// Three `plexus echo --shared` worker processes serve [`GROUP`]; a killer thread SIGKILLs one
/// at random every 5–50 ms and starts a new one 0–20 ms later, while four raw callers make
/// 20,000 calls with 32 open each. Every call gets exactly one answer — its own params, or
/// `worker_gone`, `no_such_object` or `timeout` — within the hang guard, and no answer comes
/// after the last one (checked after the workers have settled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_and_restarted_during_20000_calls() {
    let broker = BrokerProc::start(&[]);
    let addr = broker.addr();
    let mut workers: Vec<Option<EchoProc>> = (0..3)
        .map(|_| Some(EchoProc::start(&addr, GROUP, true)))
        .collect();
    let mut probe = Conn::hello(&broker.socket, "probe").await;
    let waited = probe
        .request(&Frame::call(
            1,
            "plexus",
            "wait_for",
            10_000,
            br#"["chaos"]"#,
        ))
        .await;
    assert_eq!(
        waited.kind(),
        Kind::Reply,
        "the workers registered: {waited:?}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let kills = Arc::new(AtomicU64::new(0));
    let killer = {
        let (stop, kills, addr) = (stop.clone(), kills.clone(), addr.clone());
        std::thread::spawn(move || {
            let mut rng = Rng::new(20_000);
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5 + rng.below(45)));
                let i = rng.below(workers.len() as u64) as usize;
                if let Some(w) = workers[i].take() {
                    w.kill();
                }
                kills.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(rng.below(20)));
                workers[i] = Some(EchoProc::start(&addr, GROUP, true));
            }
            workers
        })
    };

    let callers: Vec<_> = (0..CALLERS)
        .map(|k| tokio::spawn(caller(broker.socket.clone(), k)))
        .collect();
    let mut tally = Tally::default();
    let mut conns = Vec::new();
    for c in callers {
        let (t, conn) = c.await.expect("caller");
        tally.add(t);
        conns.push(conn);
    }
    stop.store(true, Ordering::SeqCst);
    let workers = killer.join().expect("killer thread");
    let kills = kills.load(Ordering::SeqCst);
    eprintln!("[chaos] {kills} worker kills during 20,000 calls: {tally:?}");

    // Late duplicates would come from workers answering after the fact: give them time, then
    // check nothing more reached any caller.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (k, c) in conns.iter_mut().enumerate() {
        let extra = c.sync(u64::MAX).await;
        assert!(
            extra.is_empty(),
            "caller {k}: answers after every call was answered: {extra:?}"
        );
    }
    assert_eq!(tally.total(), CALLERS * CALLS_PER_CALLER);
    assert!(
        kills >= 3,
        "only {kills} workers were killed: the chaos did not happen"
    );
    assert!(tally.ok > 0, "no call succeeded: {tally:?}");
    broker.assert_alive("20,000 calls with workers killed at random");
    drop(workers);
}

/// How a Rust client's call across broker restarts ended.
#[derive(Debug, Default)]
struct Outcomes {
    ok: u64,
    lost: u64,
    not_connected: u64,
    remote: HashMap<String, u64>,
    unexpected: Vec<String>,
}

/// Records `result` of the call whose params were `nonce`.
fn record(outcomes: &Mutex<Outcomes>, nonce: &str, result: Result<Value, Error>) {
    let mut o = outcomes.lock().expect("outcomes");
    match result {
        Ok(v) => {
            assert_eq!(v, json!(nonce), "a call got another call's result");
            o.ok += 1;
        }
        Err(Error::ConnectionLost(_)) => o.lost += 1,
        Err(Error::NotConnected) => o.not_connected += 1,
        Err(Error::Remote { code, .. })
            if matches!(
                code,
                ErrorCode::WorkerGone
                    | ErrorCode::NoSuchObject
                    | ErrorCode::Timeout
                    | ErrorCode::ShuttingDown
            ) =>
        {
            *o.remote.entry(code.name().to_owned()).or_default() += 1;
        }
        Err(e) => o.unexpected.push(format!("{nonce}: {e}")),
    }
}

/// Waits until `ok` reaches `target` successful calls; fails after 20 s.
async fn successes_reach(ok: &AtomicU64, target: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ok.load(Ordering::SeqCst) < target {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: only {} of {target} calls succeeded within 20 s",
            ok.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Rust worker client and four Rust caller clients (16 calls in flight) stay connected while
/// the broker is killed (SIGKILL) and restarted, then stopped (SIGTERM) and restarted, on the
/// same socket. Each call resolves exactly once, within 10 s, to its own params or to an error
/// that says the connection or the worker was lost; the worker runs each call at most once; and
/// after each restart the clients reconnect, the worker registers again, and calls succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restarted_under_connected_clients() {
    let mut broker = BrokerProc::start(&[]);
    let addr = broker.addr();
    let executed: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let worker = Client::builder()
        .address(addr.clone())
        .name("restart-worker")
        .connect()
        .await
        .expect("worker connects");
    {
        let executed = executed.clone();
        worker
            .serve_fn("restart.echo", move |_method, params: Value, _ctx| {
                let executed = executed.clone();
                async move {
                    *executed
                        .lock()
                        .expect("executed")
                        .entry(params.to_string())
                        .or_default() += 1;
                    Ok(params)
                }
            })
            .await
            .expect("serve");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let started = Arc::new(AtomicU64::new(0));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let mut loops = Vec::new();
    for k in 0..4 {
        let client = Client::builder()
            .address(addr.clone())
            .name(format!("restart-caller-{k}"))
            .connect()
            .await
            .expect("caller connects");
        for j in 0..4 {
            let (client, stop, ok, started, outcomes) = (
                client.clone(),
                stop.clone(),
                ok.clone(),
                started.clone(),
                outcomes.clone(),
            );
            loops.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let nonce = format!("c{k}-{j}-{n}");
                    started.fetch_add(1, Ordering::SeqCst);
                    let call = client.call_with::<_, Value>(
                        "restart.echo",
                        "echo",
                        &nonce,
                        Duration::from_secs(2),
                    );
                    let result = tokio::time::timeout(WAIT, call)
                        .await
                        .unwrap_or_else(|_| panic!("call {nonce} hung: no result within {WAIT:?}"));
                    let failed = result.is_err();
                    if !failed {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    record(&outcomes, &nonce, result);
                    if failed {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                n
            }));
        }
    }

    successes_reach(&ok, 300, "before any restart").await;
    broker.stop_with(rustix::process::Signal::KILL);
    broker.restart();
    let target = ok.load(Ordering::SeqCst) + 300;
    successes_reach(&ok, target, "after the broker was killed and restarted").await;
    let code = broker.stop_with(rustix::process::Signal::TERM);
    assert_eq!(
        code,
        Some(0),
        "the broker stops cleanly on SIGTERM under load"
    );
    broker.restart();
    let target = ok.load(Ordering::SeqCst) + 300;
    successes_reach(&ok, target, "after the broker was stopped and restarted").await;

    stop.store(true, Ordering::SeqCst);
    let mut calls = 0;
    for l in loops {
        calls += tokio::time::timeout(WAIT, l)
            .await
            .expect("a call loop stops in time")
            .expect("call loop");
    }
    let outcomes = outcomes.lock().expect("outcomes");
    eprintln!("[chaos] {calls} calls across two broker restarts: {outcomes:?}");
    let resolved = outcomes.ok
        + outcomes.lost
        + outcomes.not_connected
        + outcomes.remote.values().sum::<u64>()
        + outcomes.unexpected.len() as u64;
    assert_eq!(
        resolved,
        started.load(Ordering::SeqCst),
        "every call resolved once"
    );
    assert_eq!(resolved, calls);
    assert!(
        outcomes.unexpected.is_empty(),
        "calls failed in unexpected ways: {:?}",
        outcomes.unexpected
    );
    let twice: Vec<_> = executed
        .lock()
        .expect("executed")
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(nonce, n)| format!("{nonce} ×{n}"))
        .collect();
    assert!(
        twice.is_empty(),
        "the worker ran calls more than once: {twice:?}"
    );
    broker.assert_alive("two restarts under connected clients");
}
