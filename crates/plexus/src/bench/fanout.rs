//! `fanout`: one publisher, ten subscriber processes, 64-byte events for the run's duration:
//! deliveries per second and events lost.

use std::time::{Duration, Instant};

use super::registry::{Outcome, Scenario};
use super::report::Report;
use super::{Bench, json_string};
use crate::exit::{Failure, INTERNAL};

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "fanout",
    about: "1 publisher -> 10 subscriber processes, 64 B events: deliveries/s, lost",
    run: start,
};

const SUBSCRIBERS: usize = 10;

fn start(bench: &Bench) -> Outcome<'_> {
    Box::pin(run(bench))
}

async fn run(bench: &Bench) -> Result<Vec<Report>, Failure> {
    let topic = bench.unique("fanout").replace('-', ".");
    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        subscribers.push(bench.helper(&bench.bus, &["subscriber", &topic]).await?);
    }
    let publisher = bench.connect(&bench.bus).await?;
    let event = json_string(64);
    let mut published = 0u64;
    let started = Instant::now();
    while started.elapsed() < bench.duration {
        for _ in 0..64 {
            publisher.publish_raw(&topic, &event).await?;
        }
        published += 64;
    }
    publisher.publish_raw(&topic, b"\"end\"").await?;
    let (mut delivered, mut lost) = (0u64, 0u64);
    for subscriber in &mut subscribers {
        let line = subscriber
            .line(bench.duration + Duration::from_secs(30))
            .await?;
        let got: u64 = line
            .parse()
            .map_err(|_| Failure::new(INTERNAL, format!("a subscriber said {line:?}")))?;
        delivered += got;
        lost += published.saturating_sub(got);
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(vec![
        Report::new("fanout")
            .with("subscribers", SUBSCRIBERS)
            .with("event_bytes", event.len())
            .with("published", published)
            .with("deliveries_per_s", delivered as f64 / elapsed)
            .with("lost", lost),
    ])
}
