//! `memory`: a fresh broker's resident memory idle and with 1,000 idle client connections.

use std::time::Duration;

use super::Bench;
use super::procs::rss_kib;
use super::registry::{Outcome, Scenario};
use super::report::Report;
use crate::exit::{Failure, INTERNAL};

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "memory",
    about: "a fresh broker's RSS idle and with 1,000 idle connections (VmRSS)",
    run: start,
};

const CONNECTIONS: usize = 1000;

fn start(bench: &Bench) -> Outcome<'_> {
    Box::pin(run(bench))
}

/// Bytes per MiB, for the figures.
const KIB_PER_MIB: f64 = 1024.0;

async fn run(bench: &Bench) -> Result<Vec<Report>, Failure> {
    let broker = bench.fresh_broker(false).await?;
    let pid = broker
        .pid()
        .ok_or_else(|| Failure::new(INTERNAL, "the fresh broker has no pid"))?;
    // One connection first, so that what every broker pays once (the first accept, the
    // first hello) is in the idle figure, not spread over the connections.
    let first = bench.connect(&broker.unix).await?;
    first.ping().await?;
    let idle = rss_kib(pid)?;
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        clients.push(bench.connect(&broker.unix).await?);
    }
    for client in &clients {
        client.ping().await?;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let loaded = rss_kib(pid)?;
    Ok(vec![
        Report::new("memory")
            .with("rss_idle_mib", idle as f64 / KIB_PER_MIB)
            .with("rss_1k_conns_mib", loaded as f64 / KIB_PER_MIB)
            .with(
                "kib_per_conn",
                loaded.saturating_sub(idle) as f64 / CONNECTIONS as f64,
            ),
    ])
}
