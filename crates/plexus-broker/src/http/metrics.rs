//! Prometheus `GET /metrics`: the broker's counters in the text exposition format.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State as Shared;
use axum::http::header;
use axum::response::IntoResponse;

use super::Dashboard;
use crate::router::State;

/// `GET /metrics`.
pub async fn metrics(Shared(dashboard): Shared<Arc<Dashboard>>) -> impl IntoResponse {
    let body = dashboard.router.with_state(render);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// The metrics text for the router's state.
fn render(st: &State) -> String {
    let mut out = String::new();
    metric(
        &mut out,
        "plexus_connections",
        "gauge",
        "Connections open now.",
        st.conns.len(),
    );
    let queued = st.conns.values().map(|c| c.outbox.queued());
    let (total, largest) = queued.fold((0, 0), |(sum, max), q| (sum + q, max.max(q)));
    metric(
        &mut out,
        "plexus_outbox_bytes",
        "gauge",
        "Bytes queued in the outboxes of all connections now.",
        total,
    );
    metric(
        &mut out,
        "plexus_outbox_bytes_max",
        "gauge",
        "Bytes queued in the fullest outbox now.",
        largest,
    );
    metric(
        &mut out,
        "plexus_names",
        "gauge",
        "Names registered now.",
        st.registry.count(),
    );
    metric(
        &mut out,
        "plexus_subscriptions",
        "gauge",
        "Subscriptions now.",
        st.subscription_count(),
    );
    metric(
        &mut out,
        "plexus_pending_calls",
        "gauge",
        "Calls waiting for an answer now.",
        st.pending.calls_len(),
    );
    metric(
        &mut out,
        "plexus_connections_total",
        "counter",
        "Connections accepted.",
        st.stats.connections_total,
    );
    metric(
        &mut out,
        "plexus_connections_refused_total",
        "counter",
        "Connections refused at the connection limit.",
        st.stats.connections_refused,
    );
    metric(
        &mut out,
        "plexus_events_published_total",
        "counter",
        "Events published.",
        st.stats.events_published,
    );
    metric(
        &mut out,
        "plexus_events_delivered_total",
        "counter",
        "Events queued to subscribers.",
        st.stats.events_delivered,
    );
    metric(
        &mut out,
        "plexus_events_dropped_total",
        "counter",
        "Events dropped at full subscriber queues.",
        st.stats.events_dropped,
    );
    let _ = writeln!(
        out,
        "# HELP plexus_calls_total Calls routed to workers, by outcome.\n# TYPE plexus_calls_total counter"
    );
    for (outcome, n) in st.stats.outcomes() {
        let _ = writeln!(out, "plexus_calls_total{{outcome=\"{outcome}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP plexus_call_duration_seconds Time from routing a call to its answer.\n# TYPE plexus_call_duration_seconds histogram"
    );
    let (buckets, sum) = st.stats.latency();
    let mut count = 0;
    for (bound, cumulative) in buckets {
        let le = bound.map_or_else(|| "+Inf".to_owned(), |us| format!("{}", us as f64 / 1e6));
        let _ = writeln!(
            out,
            "plexus_call_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        );
        count = cumulative;
    }
    let _ = writeln!(
        out,
        "plexus_call_duration_seconds_sum {}\nplexus_call_duration_seconds_count {count}",
        sum.as_secs_f64()
    );
    out
}
