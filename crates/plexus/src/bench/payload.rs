//! `payload`: calls with 64 B, 64 KiB, 1 MiB and 16 MiB params to an echo worker process, each
//! against a plain socket round trip of the same size.

use super::registry::{Outcome, Scenario};
use super::report::{Report, ratio};
use super::{Bench, call_frame_len, json_string};
use crate::exit::Failure;

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "payload",
    about: "calls of 64 B, 64 KiB, 1 MiB, 16 MiB params: MB/s, ratio to a socket round trip of that size",
    run: start,
};

const SIZES: [usize; 4] = [64, 64 << 10, 1 << 20, 16 << 20];

fn start(bench: &Bench) -> Outcome<'_> {
    Box::pin(run(bench))
}

async fn run(bench: &Bench) -> Result<Vec<Report>, Failure> {
    let (_worker, name) = bench.echo_worker(&bench.bus).await?;
    let client = bench.connect(&bench.bus).await?;
    let mut reports = Vec::new();
    for size in SIZES {
        let params = json_string(size);
        let calls = bench.time_calls(&client, &name, &params).await?;
        let floor = bench.floor(false, call_frame_len(&name, &params)).await?;
        let per_call = calls.percentile(0.5).as_secs_f64();
        reports.push(
            Report::new("payload")
                .with("bytes", size)
                .with("calls", calls.len())
                .with("p50_us", calls.p50_us())
                .with("mb_per_s", ratio(size as f64 / 1e6, per_call))
                .with("floor_p50_us", floor.p50_us())
                .with("floor_ratio", ratio(calls.p50_us(), floor.p50_us())),
        );
    }
    Ok(reports)
}
