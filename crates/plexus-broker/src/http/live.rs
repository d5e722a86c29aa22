//! `GET /api/live`: the live feed as Server-Sent Events: `record` (a monitor record of a call,
//! reply, error or event), `tick` (a new one-second sample), and `lagged` (how many records this
//! viewer lost because it read too slowly). A slow viewer only ever loses records; the router
//! never waits for it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State as Shared;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::Dashboard;

/// Live viewers at once; more are answered 503.
pub const MAX_VIEWERS: usize = 16;

/// How often an idle feed sends a comment, so that proxies and browsers keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /api/live`.
pub async fn feed(Shared(dashboard): Shared<Arc<Dashboard>>) -> Response {
    let Ok(place) = dashboard.viewers.clone().try_acquire_owned() else {
        let msg = format!(
            "{MAX_VIEWERS} viewers already watch the live feed, the limit; close one and try again\n"
        );
        return (StatusCode::SERVICE_UNAVAILABLE, msg).into_response();
    };
    let viewer = dashboard.router.with_state(|st| st.live.watch());
    let ticks = dashboard.history.subscribe();
    let events = stream::unfold(
        (viewer, ticks, dashboard, place),
        |(mut viewer, mut ticks, dashboard, place)| async move {
            let event = tokio::select! {
                _ = dashboard.shutdown.requested() => return None,
                record = viewer.records.recv() => match record {
                    Ok(json) => Event::default()
                        .event("record")
                        .data(String::from_utf8_lossy(&json)),
                    Err(RecvError::Lagged(missed)) => Event::default()
                        .event("lagged")
                        .data(json!({ "missed": missed }).to_string()),
                    Err(RecvError::Closed) => return None,
                },
                changed = ticks.changed() => match changed {
                    Ok(()) => {
                        let sample = *ticks.borrow_and_update();
                        Event::default()
                            .event("tick")
                            .data(serde_json::to_string(&sample).unwrap_or_default())
                    }
                    Err(_) => return None,
                },
            };
            Some((
                Ok::<Event, Infallible>(event),
                (viewer, ticks, dashboard, place),
            ))
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}
