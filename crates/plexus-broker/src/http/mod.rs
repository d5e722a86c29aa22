//! The broker's HTTP listener (`Config::http`): the dashboard page, the JSON monitoring API, the
//! live feed (Server-Sent Events) and Prometheus `/metrics`, on axum over hyper HTTP/1.1.
//! `docs/monitoring.md` documents every endpoint.

mod api;
mod assets;
mod history;
mod live;
mod metrics;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router as Routes;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::debug;

use crate::accept::accept_retrying;
use crate::router::Router;
use crate::shutdown::Shutdown;
use history::History;

/// Longest request head taken; a longer one is answered 431 and the connection closed.
const MAX_REQUEST: usize = 8192;
/// How long a client has to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP connections served at once (live viewers included); more are closed at once.
const MAX_CLIENTS: usize = 64;
/// How long a connection has to finish its response once the broker shuts down.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What every handler reads.
#[derive(Debug)]
struct Dashboard {
    router: Arc<Router>,
    shutdown: Shutdown,
    started: Instant,
    started_at: SystemTime,
    history: History,
    /// Places for live viewers ([`live::MAX_VIEWERS`]).
    viewers: Arc<Semaphore>,
}

/// Serves the dashboard, the API and `/metrics` until shutdown.
pub async fn serve(listener: TcpListener, router: Arc<Router>, shutdown: Shutdown) {
    let dashboard = Arc::new(Dashboard {
        router,
        shutdown: shutdown.clone(),
        started: Instant::now(),
        started_at: SystemTime::now(),
        history: History::default(),
        viewers: Arc::new(Semaphore::new(live::MAX_VIEWERS)),
    });
    shutdown.spawn(history::sample_every_second(dashboard.clone()));
    let app = routes(dashboard);
    let stop = shutdown.requested();
    tokio::pin!(stop);
    let clients = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => return,
            a = accept_retrying("http", || listener.accept()) => a,
        };
        let Ok(slot) = clients.clone().try_acquire_owned() else {
            debug!("too many HTTP clients at once; closing one");
            continue;
        };
        let app = app.clone();
        let shutdown_conn = shutdown.clone();
        shutdown.spawn(async move {
            serve_connection(stream, app, &shutdown_conn).await;
            drop(slot);
        });
    }
}

/// Serves one HTTP/1.1 connection: one request, then it is closed (no keep-alive, so a client
/// holds a place only while it is answered or watches the live feed).
async fn serve_connection(stream: TcpStream, app: Routes, shutdown: &Shutdown) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(REQUEST_TIMEOUT)
        .max_buf_size(MAX_REQUEST)
        .keep_alive(false);
    let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.requested() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "HTTP connection ended");
    }
}

/// The routes, behind the Host check.
fn routes(dashboard: Arc<Dashboard>) -> Routes {
    let checked = Routes::new()
        .route("/", get(assets::page))
        .route("/dashboard.js", get(assets::script))
        .route("/dashboard.css", get(assets::style))
        .route("/api/server", get(api::server))
        .route("/api/connections", get(api::connections))
        .route("/api/names", get(api::names))
        .route("/api/names/{name}", get(api::name))
        .route("/api/topics", get(api::topics))
        .route("/api/history", get(api::history))
        .route("/api/health", get(api::health))
        .route("/api/live", get(live::feed))
        .layer(middleware::from_fn(local_host_only));
    Routes::new()
        .route("/metrics", get(metrics::metrics))
        .merge(checked)
        .fallback(not_found)
        .with_state(dashboard)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found; the dashboard is at /, the API at /api/server, /api/connections, /api/names, /api/topics, /api/history, /api/health, /api/live, and Prometheus text at /metrics\n",
    )
        .into_response()
}

/// Refuses a request whose `Host` names anything but an IP address or `localhost`: a web page
/// elsewhere that points its own host name at 127.0.0.1 (DNS rebinding) cannot read the API.
/// `/metrics` is exempt, for scrapers that use a name.
async fn local_host_only(request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    match host {
        Some(host) if !is_local_host(host) => (
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "the dashboard answers only requests to an IP address or localhost, not to host {host:?} (a page elsewhere may not read it through DNS rebinding)\n"
            ),
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

/// Whether a `Host` value (with or without a port) is an IP literal or `localhost`.
fn is_local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::is_local_host;

    #[test]
    fn hosts_that_are_local_literals() {
        for ok in [
            "127.0.0.1:7777",
            "localhost:7777",
            "LOCALHOST",
            "[::1]:80",
            "10.0.0.2",
        ] {
            assert!(is_local_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:7777",
            "x",
            "localhost.evil.example",
            "[nonsense]",
        ] {
            assert!(!is_local_host(bad), "{bad}");
        }
    }
}
