//! The cluster link's counters and state, shared by the link task (which counts) and the router
//! (which reports them in `plexus.stats` and the metrics).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::stats::{LATENCY_BUCKETS_US, cumulative_latency, latency_bucket};

/// The NATS connection's state, as `plexus.stats` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    /// Not connected yet.
    Connecting = 0,
    /// Connected to a NATS server.
    Connected = 1,
    /// Lost the server; reconnecting.
    Disconnected = 2,
}

impl LinkState {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Disconnected => "disconnected",
        }
    }
}

/// Counters of the traffic between this broker and the cluster.
#[derive(Debug, Default)]
pub struct ClusterStats {
    state: AtomicU8,
    kv_ready: AtomicBool,
    /// Why the last attempt to connect to NATS failed; cleared when one succeeds.
    nats_error: Mutex<Option<String>>,
    /// Times the link (re)connected to NATS.
    pub connects: AtomicU64,
    /// Calls sent to other brokers.
    pub calls_out: AtomicU64,
    /// Calls other brokers sent here.
    pub calls_in: AtomicU64,
    /// Calls to other brokers answered `unavailable` (NATS down).
    pub calls_unavailable: AtomicU64,
    /// Calls to other brokers that no broker had the name for (NATS no-responders).
    pub calls_no_responders: AtomicU64,
    /// Events sent to the cluster.
    pub events_out: AtomicU64,
    /// Events from the cluster handed to the router.
    pub events_in: AtomicU64,
    /// Events not sent to the cluster: the link's queue was full or NATS was down.
    pub events_out_dropped: AtomicU64,
    /// Messages NATS dropped on their way here (this broker was a slow consumer).
    pub messages_in_dropped: AtomicU64,
    /// Events from the cluster dropped because the link's inbound queue was full (NATS
    /// delivered them faster than this broker routes them).
    pub events_in_dropped: AtomicU64,
    /// Calls from other brokers answered `overloaded` because the link's inbound queue was full.
    pub calls_in_refused: AtomicU64,
    /// Names claimed in the cluster's name store.
    pub names_claimed: AtomicU64,
    /// Names refused because another broker holds them, or the store could not be reached.
    pub names_refused: AtomicU64,
    /// Names whose claim was lost (the lease ran out and another broker took the name).
    pub names_lost: AtomicU64,
    latency_counts: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
}

impl ClusterStats {
    /// The NATS connection's state.
    pub fn state(&self) -> LinkState {
        match self.state.load(Ordering::Relaxed) {
            1 => LinkState::Connected,
            2 => LinkState::Disconnected,
            _ => LinkState::Connecting,
        }
    }

    /// Records the NATS connection's state.
    pub fn set_state(&self, state: LinkState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// Whether NATS is connected.
    pub fn up(&self) -> bool {
        self.state() == LinkState::Connected
    }

    /// Why the last attempt to connect to NATS failed, if it did and none succeeded since.
    pub fn nats_error(&self) -> Option<String> {
        self.nats_error.lock().ok().and_then(|e| e.clone())
    }

    /// Records why connecting to NATS failed (`None`: it succeeded).
    pub fn set_nats_error(&self, error: Option<String>) {
        if let Ok(mut e) = self.nats_error.lock() {
            *e = error;
        }
    }

    /// Whether the name store is open.
    pub fn kv_ready(&self) -> bool {
        self.kv_ready.load(Ordering::Relaxed)
    }

    /// Records whether the name store is open.
    pub fn set_kv_ready(&self, ready: bool) {
        self.kv_ready.store(ready, Ordering::Relaxed);
    }

    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the time a call to another broker took, sent to answered.
    pub fn record_latency(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Some(n) = self.latency_counts.get(latency_bucket(elapsed)) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The remote call latency histogram: cumulative counts per bucket bound (µs; `None` =
    /// +Inf), and the sum in µs.
    pub fn latency(&self) -> (Vec<(Option<u64>, u64)>, u64) {
        let counts = self
            .latency_counts
            .iter()
            .map(|n| n.load(Ordering::Relaxed));
        (
            cumulative_latency(counts),
            self.latency_sum_us.load(Ordering::Relaxed),
        )
    }

    /// The counters by name, for `plexus.stats` and the metrics.
    pub fn counters(&self) -> [(&'static str, u64); 15] {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        [
            ("connects", get(&self.connects)),
            ("calls_out", get(&self.calls_out)),
            ("calls_in", get(&self.calls_in)),
            ("calls_unavailable", get(&self.calls_unavailable)),
            ("calls_no_responders", get(&self.calls_no_responders)),
            ("events_out", get(&self.events_out)),
            ("events_in", get(&self.events_in)),
            ("events_out_dropped", get(&self.events_out_dropped)),
            ("messages_in_dropped", get(&self.messages_in_dropped)),
            ("events_in_dropped", get(&self.events_in_dropped)),
            ("calls_in_refused", get(&self.calls_in_refused)),
            ("names_claimed", get(&self.names_claimed)),
            ("names_refused", get(&self.names_refused)),
            ("names_lost", get(&self.names_lost)),
            (
                "remote_calls_answered",
                self.latency().0.last().map_or(0, |(_, n)| *n),
            ),
        ]
    }

    /// The cluster's figures in the Prometheus text format: the NATS connection and name store
    /// state as gauges, the counters as `plexus_cluster_*_total`, the remote call latency as a
    /// histogram.
    #[cfg(feature = "http")]
    pub fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let gauges = [
            (
                "plexus_cluster_connected",
                "Whether the broker is connected to its cluster's NATS (1) or not (0).",
                u64::from(self.up()),
            ),
            (
                "plexus_cluster_name_store_ready",
                "Whether the cluster's name store (JetStream key-value) is open.",
                u64::from(self.kv_ready()),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        for (counter, value) in self.counters() {
            let name = format!("plexus_cluster_{counter}_total");
            let _ = writeln!(
                out,
                "# HELP {name} Cluster traffic: {counter}.\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let name = "plexus_cluster_call_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from sending a call to another broker to its answer.\n# TYPE {name} histogram"
        );
        let (buckets, sum_us) = self.latency();
        let mut count = 0;
        for (bound, cumulative) in buckets {
            let le = bound.map_or_else(|| "+Inf".to_owned(), |us| format!("{}", us as f64 / 1e6));
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
            count = cumulative;
        }
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {count}",
            sum_us as f64 / 1e6
        );
    }

    /// The `cluster` part of `plexus.stats`.
    pub fn to_json(&self, cluster: &str, node: &str) -> Value {
        let (histogram, sum_us) = self.latency();
        let answered = histogram.last().map_or(0, |(_, n)| *n);
        let mut out = json!({
            "cluster": cluster,
            "node": node,
            "nats": self.state().name(),
            "name_store": if self.kv_ready() { "ready" } else { "unavailable" },
            "remote_call_latency_us": {
                "mean": sum_us.checked_div(answered).unwrap_or(0),
                "buckets": histogram
                    .iter()
                    .map(|(bound, n)| json!([bound, n]))
                    .collect::<Vec<_>>(),
            },
        });
        if let Some(map) = out.as_object_mut() {
            if let Some(error) = self.nats_error() {
                map.insert("nats_error".to_owned(), json!(error));
            }
            for (name, n) in self.counters() {
                map.insert(name.to_owned(), json!(n));
            }
        }
        out
    }
}
