//! The JSON monitoring API: `/api/server`, `/api/connections` (sortable, paged), `/api/names`
//! (paged) and `/api/names/{name}`, `/api/topics`, `/api/history`, `/api/health`. Each takes a
//! snapshot under the router lock, copying only plain values, and sorts and serializes after.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::{Path, Query, State as Shared};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::Dashboard;
use super::viewer::Viewer;
use crate::conn_id::ConnId;
use crate::observe::latency;
use crate::registry::{NameEntry, Owners};
use crate::router::State;

/// Rows a page holds unless `limit` says fewer.
const DEFAULT_LIMIT: usize = 100;
/// Most rows a page holds.
const MAX_LIMIT: usize = 1000;

/// Client names a dialect connection is attached under (`connection/dialect.rs`).
const DIALECTS: [&str; 5] = [
    "procbridge",
    "ndjson",
    "ipc-broker",
    "ipcprims",
    "ipc-server",
];

/// `?sort=&order=&offset=&limit=`.
#[derive(Debug, Deserialize, Default)]
pub struct Page {
    sort: Option<String>,
    order: Option<String>,
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

impl Page {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)
    }

    fn descending(&self) -> bool {
        self.order.as_deref() == Some("desc")
    }

    /// The page's rows of `rows`, as JSON with the paging around them.
    fn of<T: Serialize>(&self, key: &str, sort: &str, rows: Vec<T>) -> Value {
        let total = rows.len();
        let page: Vec<T> = rows
            .into_iter()
            .skip(self.offset)
            .take(self.limit())
            .collect();
        self.wrap(key, sort, total, page)
    }

    /// `page`, this page of `total` rows, as JSON with the paging around it.
    fn wrap<T: Serialize>(&self, key: &str, sort: &str, total: usize, page: Vec<T>) -> Value {
        json!({
            "total": total,
            "offset": self.offset,
            "limit": self.limit(),
            "sort": sort,
            "order": if self.descending() { "desc" } else { "asc" },
            key: page,
        })
    }
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": msg }))).into_response()
}

fn ms_since_epoch(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `GET /api/server`: version, uptime, limits, totals, rates.
pub async fn server(Shared(dashboard): Shared<Arc<Dashboard>>) -> Response {
    let (totals, viewers) = dashboard.router.with_state(|st| {
        let gauges = [
            ("connections", st.conns.len()),
            ("names", st.registry.count()),
            ("subscriptions", st.subscription_count()),
            ("pending_calls", st.pending.calls_len()),
            (
                "outbox_bytes",
                st.conns.values().map(|c| c.outbox.queued()).sum(),
            ),
        ];
        (st.stats.to_json(&gauges), st.live.viewers())
    });
    let c = dashboard.router.config();
    let limits = json!({
        "max_frame": c.max_frame,
        "outbox_limit": c.outbox_limit,
        "max_connections": c.max_connections,
        "default_call_timeout_ms": c.default_call_timeout.as_millis() as u64,
        "max_call_timeout_ms": c.max_call_timeout.as_millis() as u64,
        "max_pending_per_connection": c.max_pending_per_connection,
        "max_pending": c.max_pending,
        "max_names_per_connection": c.max_names_per_connection,
        "max_names": c.max_names,
        "max_subscriptions_per_connection": c.max_subscriptions_per_connection,
        "max_subscriptions": c.max_subscriptions,
        "max_description_bytes": c.max_description_bytes,
        "slow_consumer": c.slow_consumer.name(),
        // Publish stall.
        "publish_stall_ms": c.publish_stall.as_millis() as u64,
    });
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "started_at_ms": ms_since_epoch(dashboard.started_at),
        "uptime_s": dashboard.started.elapsed().as_secs_f64(),
        "limits": limits,
        "totals": totals,
        "rates": dashboard.history.latest(),
        "live_viewers": viewers,
    }))
    .into_response()
}

/// One row of `/api/connections`.
#[derive(Debug, Serialize)]
struct ConnRow {
    id: ConnId,
    client: String,
    dialect: &'static str,
    transport: &'static str,
    pid: Option<i32>,
    uid: Option<u32>,
    exe: Option<String>,
    addr: Option<String>,
    connected_since_ms: u64,
    bytes_in: u64,
    bytes_out: u64,
    frames_in: u64,
    frames_out: u64,
    queued_bytes: usize,
    dropped_events: u64,
    pending_calls: usize,
    names: Vec<String>,
    subscriptions: usize,
}

/// The connections; who is behind each (client, pid, uid, executable, address) only with
/// `details`.
fn conn_rows(st: &State, details: bool) -> Vec<ConnRow> {
    st.conns
        .iter()
        .map(|(id, c)| {
            let (frames_out, bytes_out) = c.outbox.sent();
            let mut names: Vec<String> = c.names.iter().cloned().collect();
            names.sort();
            let peer = details.then_some(&c.peer);
            ConnRow {
                id: *id,
                client: peer.map(|p| p.client.clone()).unwrap_or_default(),
                dialect: DIALECTS
                    .iter()
                    .find(|d| **d == c.peer.client)
                    .copied()
                    .unwrap_or("native"),
                transport: c.peer.transport,
                pid: peer.and_then(|p| p.pid),
                uid: peer.and_then(|p| p.uid),
                exe: peer.and_then(|p| p.exe.clone()),
                addr: peer.and_then(|p| p.addr.clone()),
                connected_since_ms: ms_since_epoch(c.traffic.since),
                bytes_in: c.traffic.bytes_in,
                bytes_out,
                frames_in: c.traffic.frames_in,
                frames_out,
                queued_bytes: c.outbox.queued(),
                dropped_events: c.traffic.events_dropped,
                pending_calls: st.pending.open_for(*id),
                names,
                subscriptions: c.subs.len(),
            }
        })
        .collect()
}

/// The sort keys of `/api/connections`.
const CONN_SORTS: [&str; 12] = [
    "id",
    "client",
    "pid",
    "connected_since",
    "bytes_in",
    "bytes_out",
    "frames_in",
    "frames_out",
    "queued_bytes",
    "dropped_events",
    "pending_calls",
    "subscriptions",
];

fn compare_conns(key: &str, a: &ConnRow, b: &ConnRow) -> Ordering {
    match key {
        "client" => a.client.cmp(&b.client),
        "pid" => a.pid.cmp(&b.pid),
        "connected_since" => a.connected_since_ms.cmp(&b.connected_since_ms),
        "bytes_in" => a.bytes_in.cmp(&b.bytes_in),
        "bytes_out" => a.bytes_out.cmp(&b.bytes_out),
        "frames_in" => a.frames_in.cmp(&b.frames_in),
        "frames_out" => a.frames_out.cmp(&b.frames_out),
        "queued_bytes" => a.queued_bytes.cmp(&b.queued_bytes),
        "dropped_events" => a.dropped_events.cmp(&b.dropped_events),
        "pending_calls" => a.pending_calls.cmp(&b.pending_calls),
        "subscriptions" => a.subscriptions.cmp(&b.subscriptions),
        _ => Ordering::Equal,
    }
    .then(a.id.cmp(&b.id))
}

/// `GET /api/connections?sort=bytes_out&order=desc&offset=0&limit=100`.
pub async fn connections(
    Shared(dashboard): Shared<Arc<Dashboard>>,
    Extension(viewer): Extension<Viewer>,
    Query(page): Query<Page>,
) -> Response {
    let sort = page.sort.clone().unwrap_or_else(|| "id".to_owned());
    if !CONN_SORTS.contains(&sort.as_str()) {
        return bad_request(format!(
            "cannot sort connections by {sort:?}; sort by one of {}",
            CONN_SORTS.join(", ")
        ));
    }
    if let Some(e) = bad_order(&page) {
        return e;
    }
    let details = viewer.details();
    let mut rows = dashboard.router.with_state(|st| conn_rows(st, details));
    rows.sort_by(|a, b| compare_conns(&sort, a, b));
    if page.descending() {
        rows.reverse();
    }
    Json(page.of("connections", &sort, rows)).into_response()
}

fn bad_order(page: &Page) -> Option<Response> {
    match page.order.as_deref() {
        None | Some("asc" | "desc") => None,
        Some(other) => Some(bad_request(format!(
            "order is \"asc\" or \"desc\", not {other:?}"
        ))),
    }
}

/// An owner of a name.
#[derive(Debug, Serialize)]
struct Owner {
    conn: ConnId,
    client: String,
    pid: Option<i32>,
}

/// One row of `/api/names`.
#[derive(Debug, Serialize)]
struct NameRow {
    name: String,
    owners: Vec<Owner>,
    shared: bool,
    calls_served: u64,
    replies: u64,
    errors: u64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    methods: Option<Vec<String>>,
    has_contract: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    contract: Option<Box<RawValue>>,
}

/// A name's row; its owners' client and pid only with `details`.
fn name_row(
    st: &State,
    name: &str,
    entry: &NameEntry,
    with_contract: bool,
    details: bool,
) -> NameRow {
    let (ids, shared): (Vec<ConnId>, bool) = match &entry.owners {
        Owners::Exclusive(owner) => (vec![*owner], false),
        Owners::Shared { members, .. } => (members.clone(), true),
    };
    let owners = ids
        .into_iter()
        .map(|conn| {
            let peer = st.conns.get(&conn).map(|c| &c.peer).filter(|_| details);
            Owner {
                conn,
                client: peer.map(|p| p.client.clone()).unwrap_or_default(),
                pid: peer.and_then(|p| p.pid),
            }
        })
        .collect();
    let counts = entry.stats.latency().counts();
    NameRow {
        name: name.to_owned(),
        owners,
        shared,
        calls_served: entry.calls_served,
        replies: entry.stats.replies(),
        errors: entry.stats.errors(),
        p50_us: latency::quantile_us(&counts, 0.5),
        p99_us: latency::quantile_us(&counts, 0.99),
        methods: entry.methods.as_ref().map(|m| m.to_vec()),
        has_contract: entry.description.is_some(),
        contract: with_contract.then(|| entry.description.clone()).flatten(),
    }
}

/// `GET /api/names?offset=0&limit=100`: names in name order, without their contracts.
pub async fn names(
    Shared(dashboard): Shared<Arc<Dashboard>>,
    Extension(viewer): Extension<Viewer>,
    Query(page): Query<Page>,
) -> Response {
    if let Some(e) = bad_order(&page) {
        return e;
    }
    if let Some(sort) = page.sort.as_deref().filter(|s| *s != "name") {
        return bad_request(format!(
            "names are listed by name only, not by {sort:?}; use order=desc to reverse"
        ));
    }
    let details = viewer.details();
    let (total, rows) = dashboard.router.with_state(|st| {
        let mut all: Vec<(&String, &NameEntry)> = st.registry.iter().collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        if page.descending() {
            all.reverse();
        }
        let rows: Vec<NameRow> = all
            .iter()
            .skip(page.offset)
            .take(page.limit())
            .map(|(name, entry)| name_row(st, name, entry, false, details))
            .collect();
        (all.len(), rows)
    });
    Json(page.wrap("names", "name", total, rows)).into_response()
}

/// `GET /api/names/{name}`: one name with its contract (its registration description).
pub async fn name(
    Shared(dashboard): Shared<Arc<Dashboard>>,
    Extension(viewer): Extension<Viewer>,
    Path(name): Path<String>,
) -> Response {
    let details = viewer.details();
    let row = dashboard.router.with_state(|st| {
        st.registry
            .get(&name)
            .map(|entry| name_row(st, &name, entry, true, details))
    });
    match row {
        Some(row) => Json(row).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no object named '{name}' is registered") })),
        )
            .into_response(),
    }
}

/// One row of `/api/topics`.
#[derive(Debug, Serialize)]
struct TopicRow {
    topic: String,
    published: u64,
    delivered: u64,
    dropped: u64,
    events_per_s: f64,
    subscriptions: usize,
}

/// One subscription pattern.
#[derive(Debug, Serialize)]
struct PatternRow {
    pattern: String,
    subscriptions: usize,
}

/// `GET /api/topics`: the topics published on (at most
/// [`MAX_TOPICS`](crate::observe::topics::MAX_TOPICS) one by one) and the patterns subscribed to.
pub async fn topics(Shared(dashboard): Shared<Arc<Dashboard>>) -> Response {
    let (mut topics, mut patterns) = dashboard.router.with_state(|st| {
        let mut matched = Vec::new();
        let mut groups = Vec::new();
        let topics: Vec<TopicRow> = st
            .topics
            .iter()
            .map(|(topic, counts)| {
                matched.clear();
                groups.clear();
                st.subs.matches(topic, &mut matched);
                st.queues.matches(topic, &mut groups);
                let members: usize = groups
                    .iter()
                    .filter_map(|g| st.queues.get(*g))
                    .map(|g| g.members.len())
                    .sum();
                TopicRow {
                    topic: topic.to_owned(),
                    published: counts.published,
                    delivered: counts.delivered,
                    dropped: counts.dropped,
                    events_per_s: 0.0,
                    subscriptions: matched.len() + members,
                }
            })
            .collect();
        let mut patterns: HashMap<&str, usize> = HashMap::new();
        for c in st.conns.values() {
            for sub in c.subs.values() {
                *patterns.entry(sub.pattern.as_str()).or_default() += 1;
            }
        }
        let patterns: Vec<PatternRow> = patterns
            .into_iter()
            .map(|(pattern, subscriptions)| PatternRow {
                pattern: pattern.to_owned(),
                subscriptions,
            })
            .collect();
        (topics, patterns)
    });
    for row in &mut topics {
        row.events_per_s = dashboard.history.topic_rate(&row.topic);
    }
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    patterns.sort_by(|a, b| a.pattern.cmp(&b.pattern));
    Json(json!({ "topics": topics, "patterns": patterns })).into_response()
}

/// `GET /api/history`: the one-second samples of the last minutes, oldest first.
pub async fn history(Shared(dashboard): Shared<Arc<Dashboard>>) -> Response {
    Json(json!({ "samples": dashboard.history.samples() })).into_response()
}

/// `GET /api/health`: 200 `ok` while the broker serves, 503 `shutting_down` once it stops.
pub async fn health(Shared(dashboard): Shared<Arc<Dashboard>>) -> Response {
    let (stopping, connections) = dashboard
        .router
        .with_state(|st| (st.shutting_down, st.conns.len()));
    let status = if stopping { "shutting_down" } else { "ok" };
    let code = if stopping {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = json!({
        "status": status,
        "uptime_s": dashboard.started.elapsed().as_secs_f64(),
        "connections": connections,
    });
    (code, Json(body)).into_response()
}
