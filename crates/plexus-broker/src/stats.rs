//! The broker's counters, reported by `plexus.stats`.

use plexus_proto::ErrorCode;
use serde_json::{Map, Value, json};

/// Counters since the broker started.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections_total: u64,
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
    errors: [u64; ErrorCode::ALL.len()],
}

impl Stats {
    /// Counts an error frame sent to a peer.
    pub fn count_error(&mut self, code: ErrorCode) {
        if let Some(n) = self.errors.get_mut(code.code() as usize - 1) {
            *n += 1;
        }
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
            "calls_routed": self.calls_routed,
            "broker_calls": self.broker_calls,
            "replies_routed": self.replies_routed,
            "late_replies": self.late_replies,
            "events_published": self.events_published,
            "events_delivered": self.events_delivered,
            "events_dropped": self.events_dropped,
            "errors": errors,
        });
        if let Some(map) = out.as_object_mut() {
            for (name, value) in gauges {
                map.insert((*name).to_owned(), json!(value));
            }
        }
        out
    }
}
