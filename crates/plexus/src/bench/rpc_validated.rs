//! `rpc-validated`: calls whose params and result the broker checks against a small object
//! schema, beside the same calls to an echo worker without a contract, in the same run:
//! sequential latency and throughput at 64 B, and latency at 1 KiB and 16 KiB of params, so
//! that the overhead per call and per KiB of params can be read off.

use serde_json::{Value, json};

use super::Bench;
use super::registry::{Outcome, Scenario};
use super::report::{Latencies, Report};
use super::rpc_throughput::calls_per_s;
use crate::exit::Failure;

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "rpc-validated",
    about: "calls checked against a small object schema (params and result) vs unchecked: p50 µs at 64 B, 1 KiB, 16 KiB, calls/s",
    run: start,
};

/// Params sizes measured (bytes, about).
const SIZES: [usize; 3] = [64, 1024, 16 * 1024];

/// The schema of `echo`'s params and result: `{a: integer, b: integer, tags?: [string]}`.
pub fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "a": {"type": "integer"},
            "b": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 64}}
        },
        "required": ["a", "b"]
    })
}

/// Params of about `size` bytes that match [`schema`]: `a`, `b` and enough 14-byte tags.
fn params(size: usize) -> Vec<u8> {
    let tags: Vec<String> = (0..size.saturating_sub(24) / 14)
        .map(|i| format!("tag{i:08}"))
        .collect();
    json!({"a": 1, "b": 2, "tags": tags})
        .to_string()
        .into_bytes()
}

fn start(bench: &Bench) -> Outcome<'_> {
    Box::pin(run(bench))
}

async fn run(bench: &Bench) -> Result<Vec<Report>, Failure> {
    let (_plain, plain) = bench.echo_worker(&bench.bus).await?;
    let checked = bench.unique("checked");
    let _checked = bench
        .helper(&bench.bus, &["checked-echo-worker", &checked])
        .await?;
    let client = bench.connect(&bench.bus).await?;
    let mut reports = Vec::new();
    for size in SIZES {
        let body = params(size);
        let unchecked: Latencies = bench.time_calls(&client, &plain, &body).await?;
        let validated: Latencies = bench.time_calls(&client, &checked, &body).await?;
        let mut report = Report::new("rpc-validated")
            .with("params_bytes", body.len())
            .with("calls", validated.len())
            .with_latencies(&validated)
            .with("unchecked_p50_us", unchecked.p50_us())
            .with("overhead_p50_us", validated.p50_us() - unchecked.p50_us());
        if size == SIZES[0] {
            let unchecked_rate = calls_per_s(bench, &plain, &body).await?;
            let validated_rate = calls_per_s(bench, &checked, &body).await?;
            report = report
                .with("calls_per_s", validated_rate)
                .with("unchecked_calls_per_s", unchecked_rate);
        }
        reports.push(report);
    }
    Ok(reports)
}
