//! Cheap counters the dashboard and its API read, kept beside the router's own: per name (calls
//! answered, errors, a fixed-size latency histogram), per connection (frames and bytes in,
//! events dropped), per topic (a bounded table), and the live feed that viewers watch.

pub mod latency;
pub mod live;
pub mod topics;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use latency::Histogram;

/// What one name's calls came to. Shared (`Arc`) between the name's registry entry and the calls
/// routed to it, so an answer is counted without looking the name up again; updated under the
/// router lock, so relaxed atomics are only there to make it shareable.
#[derive(Debug, Default)]
pub struct NameStats {
    /// Calls answered with a reply.
    replies: AtomicU64,
    /// Calls that ended in an error: the worker's, a timeout, the worker gone.
    errors: AtomicU64,
    /// Time from routing to answer of the calls the worker answered.
    latency: Histogram,
}

impl NameStats {
    /// Counts a call the worker answered, `elapsed` after it was routed.
    pub fn record_answer(&self, error: bool, elapsed: Duration) {
        let counter = if error { &self.errors } else { &self.replies };
        counter.fetch_add(1, Ordering::Relaxed);
        self.latency.record(elapsed);
    }

    /// Counts a call that ended without an answer from the worker (timeout, worker gone).
    pub fn record_failure(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls answered with a reply.
    pub fn replies(&self) -> u64 {
        self.replies.load(Ordering::Relaxed)
    }

    /// Calls that ended in an error.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The latency histogram.
    pub fn latency(&self) -> &Histogram {
        &self.latency
    }
}

/// A connection's traffic, counted under the router lock. Frames and bytes out are counted by
/// its outbox.
#[derive(Debug, Clone, Copy)]
pub struct ConnTraffic {
    /// When it was attached.
    pub since: SystemTime,
    /// Frames it sent that the router routed.
    pub frames_in: u64,
    /// Their wire size (a dialect peer's messages as the native frames they became).
    pub bytes_in: u64,
    /// Events for its subscriptions dropped because its outbox was full.
    pub events_dropped: u64,
}

impl ConnTraffic {
    /// Nothing counted yet, attached now.
    pub fn new() -> ConnTraffic {
        ConnTraffic {
            since: SystemTime::now(),
            frames_in: 0,
            bytes_in: 0,
            events_dropped: 0,
        }
    }
}

impl Default for ConnTraffic {
    fn default() -> Self {
        ConnTraffic::new()
    }
}
