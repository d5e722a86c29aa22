//! `rpc-latency`: sequential 64-byte calls to an echo worker in another process, against the
//! relay floor of the same frame size.

use super::registry::{Outcome, Scenario};
use super::report::{Latencies, Report, ratio};
use super::{Bench, floor, json_string};
use crate::exit::Failure;

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "rpc-latency",
    about: "sequential 64 B calls to an echo worker process: p50/p90/p99/max µs, ratio to the relay floor",
    run: start,
};

fn start(bench: &Bench) -> Outcome<'_> {
    Box::pin(run(bench))
}

/// Sequential 64-byte calls over `bus` (client and worker both connected there).
pub async fn measure(bench: &Bench, bus: &str) -> Result<Latencies, Failure> {
    let (_worker, name) = bench.echo_worker(bus).await?;
    let client = bench.connect(bus).await?;
    bench.time_calls(&client, &name, &json_string(64)).await
}

async fn run(bench: &Bench) -> Result<Vec<Report>, Failure> {
    let calls = measure(bench, &bench.bus).await?;
    let relay = bench.floor(true, floor::call_size()).await?;
    Ok(vec![
        Report::new("rpc-latency")
            .with("calls", calls.len())
            .with_latencies(&calls)
            .with("floor_p50_us", relay.p50_us())
            .with("floor_ratio", ratio(calls.p50_us(), relay.p50_us())),
    ])
}
