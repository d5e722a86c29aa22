//! Prometheus metrics over HTTP: `GET /metrics` answers the broker's counters in the text
//! exposition format. One endpoint, so a few lines of HTTP/1.1 rather than an HTTP stack.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::debug;

use crate::router::{Router, State};
use crate::shutdown::Shutdown;

/// Longest request head read before answering.
const MAX_REQUEST: usize = 8192;

/// Serves `/metrics` until shutdown.
pub async fn serve(listener: TcpListener, router: Arc<Router>, shutdown: Shutdown) {
    let stop = shutdown.requested();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            a = listener.accept() => a,
        };
        let Ok((mut stream, _)) = accepted else {
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(512);
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
            });
            if read.await.is_err() {
                return;
            }
            let request_line = head.split(|b| *b == b'\r').next().unwrap_or_default();
            let response = if request_line.starts_with(b"GET /metrics ") {
                let body = router.with_state(render);
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 22\r\nConnection: close\r\n\r\ntry GET /metrics only\n".to_owned()
            };
            if let Err(e) = stream.write_all(response.as_bytes()).await {
                debug!(error = %e, "metrics response not sent");
            }
        });
    }
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// The metrics text for the router's state.
pub fn render(st: &State) -> String {
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
        st.subs.count(),
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
