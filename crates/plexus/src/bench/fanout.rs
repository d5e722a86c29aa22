//! `fanout`: one publisher, ten subscriber processes, 64-byte events for the run's duration:
//! deliveries per second and events lost.

use std::time::{Duration, Instant};

use plexus_client::Client;

use super::procs::Helper;
use super::registry::{Outcome, Scenario};
use super::report::Report;
use super::{Bench, json_string};
use crate::exit::{Failure, INTERNAL, TIMEOUT};

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    name: "fanout",
    about: "1 publisher -> 10 subscriber processes, 64 B events: deliveries/s, lost",
    run: start,
};

/// Subscriber processes.
pub(super) const SUBSCRIBERS: usize = 10;
/// How often the end marker is published again while a subscriber has not answered it.
const END_AGAIN: Duration = Duration::from_millis(50);
/// How long the subscribers have, after the publisher stopped, to count what reached them.
const DRAIN: Duration = Duration::from_secs(30);

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
    let fanned = fan_out(bench, &publisher, &topic, &mut subscribers).await?;
    Ok(vec![fanned.report("fanout")])
}

/// What one fan-out run delivered.
pub(super) struct FannedOut {
    /// Events published.
    published: u64,
    /// Events received, summed over the subscribers.
    delivered: u64,
    /// Events published and not received, summed over the subscribers.
    lost: u64,
    /// From the first publish until the last subscriber counted.
    elapsed: Duration,
    event_bytes: usize,
}

impl FannedOut {
    /// The scenario's report under `name`.
    pub(super) fn report(&self, name: &'static str) -> Report {
        Report::new(name)
            .with("subscribers", SUBSCRIBERS)
            .with("event_bytes", self.event_bytes)
            .with("published", self.published)
            .with(
                "deliveries_per_s",
                self.delivered as f64 / self.elapsed.as_secs_f64(),
            )
            .with("lost", self.lost)
    }
}

/// Publishes 64-byte events on `topic` for the bench's duration, then the end marker, which
/// each `subscribers` helper answers with the count it received. The end marker can be lost like
/// any event (a full queue on its way), so it is published again until every subscriber
/// answered.
pub(super) async fn fan_out(
    bench: &Bench,
    publisher: &Client,
    topic: &str,
    subscribers: &mut [Helper],
) -> Result<FannedOut, Failure> {
    let event = json_string(64);
    let mut published = 0u64;
    let started = Instant::now();
    while started.elapsed() < bench.duration {
        for _ in 0..64 {
            publisher.publish_raw(topic, &event).await?;
        }
        published += 64;
    }
    publisher.flush().await?;
    let mut counts: Vec<Option<u64>> = vec![None; subscribers.len()];
    let deadline = Instant::now() + DRAIN;
    while counts.iter().any(Option::is_none) {
        if Instant::now() > deadline {
            let missing = counts.iter().filter(|c| c.is_none()).count();
            return Err(Failure::new(
                TIMEOUT,
                format!("{missing} fan-out subscriber(s) did not count within {DRAIN:?}"),
            ));
        }
        publisher.publish_raw(topic, b"\"end\"").await?;
        for (count, subscriber) in counts.iter_mut().zip(subscribers.iter_mut()) {
            if count.is_some() {
                continue;
            }
            if let Some(line) = subscriber.try_line(END_AGAIN).await? {
                let got = line
                    .parse()
                    .map_err(|_| Failure::new(INTERNAL, format!("a subscriber said {line:?}")))?;
                *count = Some(got);
            }
        }
    }
    let delivered: u64 = counts.iter().flatten().sum();
    let lost = counts
        .iter()
        .flatten()
        .map(|got| published.saturating_sub(*got))
        .sum();
    Ok(FannedOut {
        published,
        delivered,
        lost,
        elapsed: started.elapsed(),
        event_bytes: event.len(),
    })
}
