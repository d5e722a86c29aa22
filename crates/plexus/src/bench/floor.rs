//! `floor`: the denominators — a plain Unix-socket ping-pong with an echo process (two hops) and
//! the same through a relay process (four hops, a brokered call's path without routing), with
//! messages the size of a 64-byte call.

use super::registry::{Outcome, Scenario};
use super::report::{Report, micros};
use super::{Bench, call_frame_len, json_string};
use crate::exit::Failure;

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "floor",
    about: "Unix-socket ping-pong and minimal relay with call-sized messages: every ratio's denominator",
    run: start,
};

fn start(bench: &Bench) -> Outcome<'_> {
    Box::pin(run(bench))
}

/// The frame size of the 64-byte call the latency scenarios make.
pub fn call_size() -> usize {
    call_frame_len("bench-echo-000000-00", &json_string(64))
}

async fn run(bench: &Bench) -> Result<Vec<Report>, Failure> {
    let size = call_size();
    let direct = bench.floor(false, size).await?;
    let relay = bench.floor(true, size).await?;
    Ok(vec![
        Report::new("floor")
            .with("frame_bytes", size)
            .with("pingpong_p50_us", direct.p50_us())
            .with("pingpong_p99_us", micros(direct.percentile(0.99)))
            .with("relay_p50_us", relay.p50_us())
            .with("relay_p99_us", micros(relay.percentile(0.99))),
    ])
}
