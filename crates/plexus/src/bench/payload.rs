//! `payload`: calls with 64 B, 64 KiB, 1 MiB, 16 MiB and 64 MiB params to an echo worker process,
//! each against a plain socket round trip of the same size. Payloads of 128 KiB and more travel
//! as sealed memfds between the bench's client, the broker and the worker (`docs/protocol.md`,
//! "Memfd payloads"). The caller's params (JSON bytes made once, `Client::call_raw`: no JSON
//! encoding is measured) go straight into a memfd; the worker answers with its params as they
//! came (`Client::serve_payload`), handing that memfd back unread, and the caller reads the
//! result from it: one memfd filled and one read per call. What is measured is the bus moving
//! the bytes, not a handler reading them.

use super::registry::{Outcome, Scenario};
use super::report::{Report, ratio};
use super::{Bench, call_frame_len, json_string};
use crate::exit::Failure;

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "payload",
    about: "calls of 64 B, 64 KiB, 1 MiB, 16 MiB, 64 MiB params: MB/s, ratio to a socket round trip of that size",
    run: start,
};

const SIZES: [usize; 5] = [64, 64 << 10, 1 << 20, 16 << 20, 64 << 20];
/// The frame limit of the broker this scenario starts, so that 64 MiB params fit with their
/// header and strings (the default limit takes 16 MiB).
const MAX_FRAME: usize = (64 << 20) + (64 << 10);

fn start(bench: &Bench) -> Outcome<'_> {
    Box::pin(run(bench))
}

async fn run(bench: &Bench) -> Result<Vec<Report>, Failure> {
    // A broker of its own with a frame limit for 64 MiB; with --bus, sizes over its limit are
    // left out.
    let own = match bench.broker_threads {
        Some(_) => {
            let limits = [
                "--max-frame".to_owned(),
                MAX_FRAME.to_string(),
                "--outbox-limit".to_owned(),
                (2 * MAX_FRAME).to_string(),
            ];
            let name = bench.unique("payload-broker");
            Some(bench.fresh_broker_with(&name, &limits).await?)
        }
        None => None,
    };
    let bus = own.as_ref().map_or(bench.bus.as_str(), |b| b.unix.as_str());
    // The worker answers with its params as they came: what is measured is moving the payload,
    // not JSON work (which `rpc-validated` and the other scenarios include).
    let name = bench.unique("raw-echo");
    let _worker = bench.helper(bus, &["raw-echo-worker", &name]).await?;
    let client = bench.connect(bus).await?;
    let limit = client.broker_info().max_frame as usize;
    let mut reports = Vec::new();
    for size in SIZES {
        let params = json_string(size);
        if call_frame_len(&name, &params) > limit {
            eprintln!(
                "payload: {size}-byte params are over the broker's max_frame ({limit}); left out"
            );
            continue;
        }
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
