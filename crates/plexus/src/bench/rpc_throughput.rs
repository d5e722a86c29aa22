//! `rpc-throughput`: 4 client connections with 16 calls in flight each to one echo worker
//! process: calls answered per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::registry::{Outcome, Scenario};
use super::report::Report;
use super::{Bench, json_string};
use crate::exit::{Failure, INTERNAL};

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "rpc-throughput",
    about: "4 clients x 16 calls in flight to an echo worker process: calls/s",
    run: start,
};

/// Connections calling at once.
pub(super) const CLIENTS: usize = 4;
/// Calls in flight on each.
pub(super) const IN_FLIGHT: usize = 16;

fn start(bench: &Bench) -> Outcome<'_> {
    Box::pin(run(bench))
}

async fn run(bench: &Bench) -> Result<Vec<Report>, Failure> {
    let (_worker, name) = bench.echo_worker(&bench.bus).await?;
    let calls_per_s = calls_per_s(bench, &name, &json_string(64)).await?;
    let mut report = Report::new("rpc-throughput")
        .with("clients", CLIENTS)
        .with("in_flight", CLIENTS * IN_FLIGHT)
        .with("calls_per_s", calls_per_s);
    if let Some(threads) = bench.broker_threads {
        report = report.with("broker_threads", threads);
    }
    Ok(vec![report])
}

/// Calls to `name.echo` with `params` answered per second, from [`CLIENTS`] new connections with
/// [`IN_FLIGHT`] calls in flight each, for the bench's duration.
pub(super) async fn calls_per_s(bench: &Bench, name: &str, params: &[u8]) -> Result<f64, Failure> {
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(bench.connect(&bench.bus).await?);
    }
    let (name, params) = (Arc::new(name.to_owned()), Arc::new(params.to_vec()));
    let done = Arc::new(AtomicU64::new(0));
    let (started, duration) = (Instant::now(), bench.duration);
    let mut callers = Vec::new();
    for client in &clients {
        for _ in 0..IN_FLIGHT {
            let (client, name, params, done) =
                (client.clone(), name.clone(), params.clone(), done.clone());
            callers.push(tokio::spawn(async move {
                while started.elapsed() < duration {
                    client
                        .call_raw(&name, "echo", &params, Duration::from_secs(30))
                        .await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<(), plexus_client::Error>(())
            }));
        }
    }
    for caller in callers {
        caller
            .await
            .map_err(|e| Failure::new(INTERNAL, e.to_string()))??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}
