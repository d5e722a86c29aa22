//! `tcp`: `rpc-latency` over loopback TCP next to the same over the Unix socket, on a fresh
//! broker that listens on both.

use super::registry::{Outcome, Scenario};
use super::report::{Report, ratio};
use super::{Bench, rpc_latency};
use crate::exit::{Failure, INTERNAL};

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "tcp",
    about: "rpc-latency over loopback TCP and over the Unix socket of one broker: the ratio",
    run: start,
};

fn start(bench: &Bench) -> Outcome<'_> {
    Box::pin(run(bench))
}

async fn run(bench: &Bench) -> Result<Vec<Report>, Failure> {
    let broker = bench.fresh_broker(true).await?;
    let tcp = broker
        .tcp
        .clone()
        .ok_or_else(|| Failure::new(INTERNAL, "the broker has no TCP address"))?;
    let unix = rpc_latency::measure(bench, &broker.unix).await?;
    let over_tcp = rpc_latency::measure(bench, &tcp).await?;
    Ok(vec![
        Report::new("tcp")
            .with("calls", over_tcp.len())
            .with_latencies(&over_tcp)
            .with("unix_p50_us", unix.p50_us())
            .with("unix_ratio", ratio(over_tcp.p50_us(), unix.p50_us())),
    ])
}
