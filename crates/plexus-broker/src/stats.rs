//! The broker's counters, reported by `plexus.stats`.

use std::time::Duration;

use plexus_proto::ErrorCode;
use serde_json::{Map, Value, json};

/// Upper bounds of the call latency histogram's buckets, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000,
];

/// The bucket of [`LATENCY_BUCKETS_US`] a duration falls in; the last (`len()`) is +Inf.
pub fn latency_bucket(elapsed: Duration) -> usize {
    let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    LATENCY_BUCKETS_US
        .iter()
        .position(|b| us <= *b)
        .unwrap_or(LATENCY_BUCKETS_US.len())
}

/// Per-bucket counts (one per bound, then +Inf) as Prometheus wants them: cumulative counts per
/// bucket bound in µs (`None` = +Inf).
pub fn cumulative_latency(counts: impl IntoIterator<Item = u64>) -> Vec<(Option<u64>, u64)> {
    let mut total = 0;
    LATENCY_BUCKETS_US
        .iter()
        .map(|b| Some(*b))
        .chain(std::iter::once(None))
        .zip(counts)
        .map(|(bound, n)| {
            total += n;
            (bound, total)
        })
        .collect()
}

/// Counters since the broker started.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections_total: u64,
    /// Connections refused because the broker had `max_connections` open.
    pub connections_refused: u64,
    /// Calls forwarded to workers.
    pub calls_routed: u64,
    /// Calls answered by the broker's own object.
    pub broker_calls: u64,
    /// Replies and errors forwarded from workers to callers.
    pub replies_routed: u64,
    /// Answers that matched no pending call (late, duplicate or forged).
    pub late_replies: u64,
    /// Publish frames accepted.
    pub events_published: u64,
    /// Event frames queued to subscribers.
    pub events_delivered: u64,
    /// Events dropped because a subscriber's outbox was full.
    pub events_dropped: u64,
    /// Monitor feed records queued to monitor subscribers (not counted as events).
    pub monitor_delivered: u64,
    /// Monitor feed records dropped because a monitor subscriber's outbox was full.
    pub monitor_dropped: u64,
    /// Subscribers disconnected as slow consumers (`slow_consumer = "disconnect"`).
    pub slow_consumers_disconnected: u64,
    // Access control.
    /// Requests and connections refused by the policy or the token.
    pub access_denied: u64,
    /// Requests and connections refused at a per-user quota.
    pub quota_exceeded: u64,
    errors: [u64; ErrorCode::ALL.len()],
    /// Calls by outcome: index 0 answered ok, then one per error code.
    outcomes: [u64; ErrorCode::ALL.len() + 1],
    /// Answered calls per latency bucket (the last is +Inf).
    latency_counts: [u64; LATENCY_BUCKETS_US.len() + 1],
    latency_sum: Duration,
}

impl Stats {
    /// Counts an error frame sent to a peer.
    pub fn count_error(&mut self, code: ErrorCode) {
        let slot = ErrorCode::ALL.iter().position(|c| *c == code);
        if let Some(n) = slot.and_then(|i| self.errors.get_mut(i)) {
            *n += 1;
        }
    }

    /// Counts a finished call: `outcome` is `None` for success; `elapsed` is known for calls
    /// a worker answered.
    pub fn record_call(&mut self, outcome: Option<ErrorCode>, elapsed: Option<Duration>) {
        // Slots follow `ErrorCode::ALL`, not the code numbers, which have gaps.
        let slot = match outcome {
            None => Some(0),
            Some(c) => ErrorCode::ALL.iter().position(|a| *a == c).map(|i| i + 1),
        };
        if let Some(n) = slot.and_then(|i| self.outcomes.get_mut(i)) {
            *n += 1;
        }
        if let Some(elapsed) = elapsed {
            self.latency_counts[latency_bucket(elapsed)] += 1;
            self.latency_sum += elapsed;
        }
    }

    /// Calls by outcome name (`ok` or an error code name).
    pub fn outcomes(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        std::iter::once("ok")
            .chain(ErrorCode::ALL.iter().map(|c| c.name()))
            .zip(self.outcomes)
    }

    /// The latency histogram: cumulative counts per bucket bound (µs; `None` = +Inf), and the sum.
    #[cfg(feature = "http")]
    pub fn latency(&self) -> (Vec<(Option<u64>, u64)>, Duration) {
        (cumulative_latency(self.latency_counts), self.latency_sum)
    }

    /// The counters as JSON, with the current gauges added by the caller.
    pub fn to_json(&self, gauges: &[(&str, usize)]) -> Value {
        let errors: Map<String, Value> = ErrorCode::ALL
            .iter()
            .zip(self.errors)
            .map(|(c, n)| (c.name().to_owned(), json!(n)))
            .collect();
        let mut out = json!({
            "connections_total": self.connections_total,
            "connections_refused": self.connections_refused,
            "calls_routed": self.calls_routed,
            "broker_calls": self.broker_calls,
            "replies_routed": self.replies_routed,
            "late_replies": self.late_replies,
            "events_published": self.events_published,
            "events_delivered": self.events_delivered,
            "events_dropped": self.events_dropped,
            "monitor_delivered": self.monitor_delivered,
            "monitor_dropped": self.monitor_dropped,
            "slow_consumers_disconnected": self.slow_consumers_disconnected,
            "access_denied": self.access_denied,
            "quota_exceeded": self.quota_exceeded,
            "errors": errors,
            "calls_by_outcome": self.outcomes().map(|(k, n)| (k.to_owned(), json!(n))).collect::<Map<String, Value>>(),
        });
        if let Some(map) = out.as_object_mut() {
            for (name, value) in gauges {
                map.insert((*name).to_owned(), json!(value));
            }
        }
        out
    }
}
