//! Prometheus metrics over HTTP: `GET /metrics` answers the broker's counters in the text
//! exposition format. One endpoint, so a few lines of HTTP/1.1 rather than an HTTP stack.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::debug;

use crate::accept::accept_retrying;
use crate::router::{Router, State};
use crate::shutdown::Shutdown;

/// Longest request head taken; a longer one is answered 431 and the connection closed.
const MAX_REQUEST: usize = 8192;
/// How long a client has to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to take the response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read (and thrown away) after the response, until the client closes.
const DRAIN: usize = 64 * 1024;
/// Metrics connections served at once; more are closed at once.
const MAX_CLIENTS: usize = 16;

/// Serves `/metrics` until shutdown.
pub async fn serve(listener: TcpListener, router: Arc<Router>, shutdown: Shutdown) {
    let stop = shutdown.requested();
    tokio::pin!(stop);
    let clients = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => return,
            a = accept_retrying("metrics", || listener.accept()) => a,
        };
        let Ok(slot) = clients.clone().try_acquire_owned() else {
            debug!("too many metrics clients at once; closing one");
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            answer(stream, &router).await;
            drop(slot);
        });
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, router: &Router) {
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Err(_) | Ok(Head::Closed) => return,
        Ok(Head::TooLarge) => "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
        Ok(Head::Complete(head)) => {
            let request_line = head.split(|b| *b == b'\r').next().unwrap_or_default();
            if request_line.starts_with(b"GET /metrics ") {
                let body = router.with_state(render);
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 22\r\nConnection: close\r\n\r\ntry GET /metrics only\n".to_owned()
            }
        }
    };
    let send = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Reading what the client still sends keeps its unread bytes from turning the close into
        // a reset that could discard the response before the client reads it.
        let mut rest = (&mut stream).take(DRAIN as u64);
        tokio::io::copy(&mut rest, &mut tokio::io::sink()).await
    };
    match tokio::time::timeout(RESPONSE_TIMEOUT, send).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => debug!(error = %e, "metrics response not sent"),
        Err(_) => debug!("metrics client did not take the response in time"),
    }
}

/// What came of reading a request head.
enum Head {
    /// The head, up to its blank line.
    Complete(Vec<u8>),
    /// No blank line within [`MAX_REQUEST`] bytes.
    TooLarge,
    /// The client closed (or the read failed) before the blank line.
    Closed,
}

/// Reads until the blank line that ends the head, scanning each byte once.
async fn read_head(stream: &mut TcpStream) -> Head {
    let mut head = Vec::with_capacity(1024);
    let mut scanned = 0usize;
    loop {
        if head.len() >= MAX_REQUEST {
            return Head::TooLarge;
        }
        let mut buf = [0u8; 1024];
        let room = buf.len().min(MAX_REQUEST - head.len());
        match stream.read(&mut buf[..room]).await {
            Ok(0) | Err(_) => return Head::Closed,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        // The blank line may straddle reads: look again at the last 3 bytes scanned.
        let from = scanned.saturating_sub(3);
        if let Some(at) = head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(from + at);
            return Head::Complete(head);
        }
        scanned = head.len();
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
    // Access control.
    metric(
        &mut out,
        "plexus_access_denied_total",
        "counter",
        "Requests and connections refused by the policy or the token.",
        st.stats.access_denied,
    );
    metric(
        &mut out,
        "plexus_quota_exceeded_total",
        "counter",
        "Requests and connections refused at a per-user quota.",
        st.stats.quota_exceeded,
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
