//! `cluster` (`plexus bench --cluster`): two brokers federated through a `nats-server` the
//! bench starts on loopback: sequential 64-byte calls from a client on broker A to an echo
//! worker on broker B, next to the same calls to a worker on A; and one publisher on A fanning
//! out to ten subscriber processes on B.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};

use super::fanout::SUBSCRIBERS;
use super::procs::Broker;
use super::registry::{Outcome, Scenario};
use super::report::{Report, ratio};
use super::{Bench, fanout, json_string, rpc_latency};
use crate::exit::{Failure, INTERNAL, TIMEOUT};

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "cluster",
    about: "two brokers through nats-server: cross-broker 64 B call latency (vs local), fan-out to 10 subscriber processes on the other broker",
    run: start,
};

fn start(bench: &Bench) -> Outcome<'_> {
    Box::pin(run(bench))
}

/// A `nats-server` with JetStream on a free loopback port, killed when dropped.
struct NatsServer {
    _child: Child,
    url: String,
}

impl NatsServer {
    async fn start(bench: &Bench) -> Result<NatsServer, Failure> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| Failure::new(INTERNAL, format!("no free TCP port: {e}")))?;
        let store = bench.socket_path("nats-store");
        let store = store.trim_start_matches("unix:");
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd", store])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Failure::new(
                    INTERNAL,
                    format!("cannot run nats-server ({e}); the cluster bench needs it (apt-get install nats-server)"),
                )
            })?;
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if started.elapsed() > Duration::from_secs(10) {
                return Err(Failure::new(TIMEOUT, "nats-server did not start"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(NatsServer {
            _child: child,
            url: format!("nats://127.0.0.1:{port}"),
        })
    }
}

/// Starts a broker in the cluster as `node` and waits until it has joined.
async fn broker(bench: &Bench, nats: &NatsServer, node: &str) -> Result<Broker, Failure> {
    let name = bench.unique("cluster-broker");
    let extra = ["--cluster", &nats.url, "--cluster-node", node].map(str::to_owned);
    let broker = bench.fresh_broker_with(&name, &extra).await?;
    let client = bench.connect(&broker.unix).await?;
    let started = Instant::now();
    loop {
        let stats: Value = client.call("plexus", "stats", &Value::Null).await?;
        if stats["cluster"]["name_store"] == "ready" {
            return Ok(broker);
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(Failure::new(
                TIMEOUT,
                format!(
                    "broker {node} did not join the cluster: {}",
                    stats["cluster"]
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run(bench: &Bench) -> Result<Vec<Report>, Failure> {
    let nats = NatsServer::start(bench).await?;
    let a = broker(bench, &nats, "a").await?;
    let b = broker(bench, &nats, "b").await?;

    let local = rpc_latency::measure(bench, &a.unix).await?;
    let (_worker, name) = bench.echo_worker(&b.unix).await?;
    let client = bench.connect(&a.unix).await?;
    let started = Instant::now();
    while client
        .call_raw(&name, "echo", b"1", Duration::from_secs(5))
        .await
        .is_err()
    {
        if started.elapsed() > Duration::from_secs(10) {
            return Err(Failure::new(TIMEOUT, "broker a never saw b's worker"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let remote = bench.time_calls(&client, &name, &json_string(64)).await?;

    let topic = bench.unique("cluster-fanout").replace('-', ".");
    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        subscribers.push(bench.helper(&b.unix, &["subscriber", &topic]).await?);
    }
    let publisher = bench.connect(&a.unix).await?;
    // Until b's subscription to the cluster's events is in place, early events go nowhere.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fanned = fanout::fan_out(bench, &publisher, &topic, &mut subscribers).await?;
    Ok(vec![
        Report::new("cluster-rpc-latency")
            .with("calls", remote.len())
            .with_latencies(&remote)
            .with("local_p50_us", local.p50_us())
            .with("ratio_to_local", ratio(remote.p50_us(), local.p50_us())),
        fanned.report("cluster-fanout"),
    ])
}
