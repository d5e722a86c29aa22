//! The last minutes of the bus, one sample a second (calls, errors, latency, events), for the
//! dashboard's charts and rates, and the event rate of every counted topic.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;

use super::Dashboard;
use crate::observe::latency::{self, BUCKETS};
use crate::router::State;

/// Samples kept: five minutes.
pub const SAMPLES: usize = 300;

/// One second of the bus.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub t_ms: u64,
    /// Calls routed to workers that ended in the second (answered, failed or timed out).
    pub calls_per_s: f64,
    /// Of those, the ones that ended in an error.
    pub errors_per_s: f64,
    /// Median latency of the calls workers answered in the second, in microseconds.
    pub p50_us: Option<f64>,
    /// 99th percentile latency, in microseconds.
    pub p99_us: Option<f64>,
    /// Events published in the second.
    pub events_per_s: f64,
    /// Connections open.
    pub connections: usize,
}

/// The bus's running totals at one moment.
#[derive(Debug, Clone, Default)]
struct Totals {
    calls: u64,
    errors: u64,
    latency: [u64; BUCKETS],
    events: u64,
    connections: usize,
    topics: HashMap<String, u64>,
}

impl Totals {
    fn read(st: &State) -> Totals {
        let (calls, errors) = st
            .stats
            .outcomes()
            .fold((0, 0), |(all, errors), (outcome, n)| {
                (all + n, if outcome == "ok" { errors } else { errors + n })
            });
        let (cumulative, _) = st.stats.latency();
        let mut latency = [0; BUCKETS];
        let mut before = 0;
        for (slot, (_, upto)) in latency.iter_mut().zip(cumulative) {
            *slot = upto - before;
            before = upto;
        }
        Totals {
            calls,
            errors,
            latency,
            events: st.stats.events_published,
            connections: st.conns.len(),
            topics: st
                .topics
                .iter()
                .map(|(topic, counts)| (topic.to_owned(), counts.published))
                .collect(),
        }
    }
}

/// The samples and what the next one is measured from.
#[derive(Debug, Default)]
struct Kept {
    samples: VecDeque<Sample>,
    last: Option<Totals>,
    topic_rates: HashMap<String, f64>,
}

/// The history, and a channel that announces every new sample to live viewers.
#[derive(Debug)]
pub struct History {
    kept: Mutex<Kept>,
    latest: watch::Sender<Sample>,
}

impl Default for History {
    fn default() -> Self {
        History {
            kept: Mutex::default(),
            latest: watch::Sender::new(Sample::default()),
        }
    }
}

impl History {
    fn kept(&self) -> MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The samples kept, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.kept().samples.iter().copied().collect()
    }

    /// The newest sample.
    pub fn latest(&self) -> Sample {
        *self.latest.borrow()
    }

    /// Events per second on `topic` in the last second.
    pub fn topic_rate(&self, topic: &str) -> f64 {
        self.kept().topic_rates.get(topic).copied().unwrap_or(0.0)
    }

    /// A receiver told of every new sample.
    pub fn subscribe(&self) -> watch::Receiver<Sample> {
        self.latest.subscribe()
    }

    /// Adds the sample between the last totals and `now`, `elapsed` apart.
    fn add(&self, now: Totals, elapsed: Duration) {
        let mut kept = self.kept();
        let secs = elapsed.as_secs_f64().max(1e-3);
        let t_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let sample = match &kept.last {
            None => Sample {
                t_ms,
                connections: now.connections,
                ..Sample::default()
            },
            Some(last) => {
                let answered = latency::since(&now.latency, &last.latency);
                Sample {
                    t_ms,
                    calls_per_s: now.calls.saturating_sub(last.calls) as f64 / secs,
                    errors_per_s: now.errors.saturating_sub(last.errors) as f64 / secs,
                    p50_us: latency::quantile_us(&answered, 0.5),
                    p99_us: latency::quantile_us(&answered, 0.99),
                    events_per_s: now.events.saturating_sub(last.events) as f64 / secs,
                    connections: now.connections,
                }
            }
        };
        let rates = now
            .topics
            .iter()
            .map(|(topic, n)| {
                let before = kept
                    .last
                    .as_ref()
                    .and_then(|l| l.topics.get(topic))
                    .copied()
                    .unwrap_or(*n);
                (topic.clone(), n.saturating_sub(before) as f64 / secs)
            })
            .collect();
        kept.topic_rates = rates;
        if kept.samples.len() == SAMPLES {
            kept.samples.pop_front();
        }
        kept.samples.push_back(sample);
        kept.last = Some(now);
        drop(kept);
        self.latest.send_replace(sample);
    }
}

/// Takes a sample every second until shutdown.
pub async fn sample_every_second(dashboard: Arc<Dashboard>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = dashboard.shutdown.requested();
    tokio::pin!(stop);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = &mut stop => return,
            now = tick.tick() => {
                let totals = dashboard.router.with_state(Totals::read);
                dashboard.history.add(totals, now - last);
                last = now;
            }
        }
    }
}
