//! The monitor feed's records: JSON copies of the calls, answers, errors and events the broker
//! routes (like dbus-monitor), published on `plexus.monitor.*`. The router builds them only while
//! someone subscribes to the feed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plexus_proto::{ErrorCode, Frame, topic_matches};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::conn_id::ConnId;

/// The topics of the feed.
pub const TOPICS: [&str; 4] = [
    "plexus.monitor.call",
    "plexus.monitor.reply",
    "plexus.monitor.error",
    "plexus.monitor.event",
];

/// Payloads up to this size are shown in the feed; larger ones only by size.
const SHOWN_PAYLOAD: usize = 4096;

/// Whether a subscription to `pattern` receives the feed: it must name `plexus.monitor`
/// literally, so that broad wildcards like `>` do not eavesdrop (as NATS keeps `$SYS` out of `>`).
pub fn is_monitor_pattern(pattern: &str) -> bool {
    pattern.starts_with("plexus.monitor.") && TOPICS.iter().any(|t| topic_matches(pattern, t))
}

/// Whether `topic` is one of the feed's own (never itself monitored).
pub fn is_monitor_topic(topic: &str) -> bool {
    topic.starts_with("plexus.monitor.")
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

/// The payload as JSON when it is small JSON, else `null`.
fn shown(payload: &[u8]) -> Value {
    if payload.len() > SHOWN_PAYLOAD {
        return Value::Null;
    }
    serde_json::from_slice::<Box<RawValue>>(payload)
        .ok()
        .map_or(Value::Null, |raw| json!(raw))
}

/// The record of a call routed from `from` to `to` as `call_id`.
pub fn call_record(from: ConnId, to: ConnId, call_id: u64, frame: &Frame) -> Frame {
    let payload = frame.payload();
    let body = json!({
        "kind": "call", "ts_us": now_us(), "from": from, "to": to, "call_id": call_id,
        "object": frame.string(0), "method": frame.string(1), "timeout_ms": frame.aux(),
        "bytes": payload.len(), "params": shown(&payload),
    });
    Frame::publish(0, TOPICS[0], body.to_string().as_bytes(), false)
}

/// The record of a worker's answer to `call_id`, `elapsed` after the call.
pub fn answer_record(
    from: ConnId,
    to: ConnId,
    call_id: u64,
    elapsed: Duration,
    frame: &Frame,
) -> Frame {
    let payload = frame.payload();
    let mut body = json!({
        "kind": "reply", "ts_us": now_us(), "from": from, "to": to, "call_id": call_id,
        "elapsed_us": elapsed.as_micros(), "bytes": payload.len(), "result": shown(&payload),
    });
    let mut topic = TOPICS[1];
    if let (Some(map), plexus_proto::Kind::Error) = (body.as_object_mut(), frame.kind()) {
        map.insert("kind".into(), json!("error"));
        map.insert("code".into(), json!(frame.error_code().name()));
        map.insert("message".into(), json!(frame.string(0)));
        topic = TOPICS[2];
    }
    Frame::publish(0, topic, body.to_string().as_bytes(), false)
}

/// The record of an error the broker itself answered `to`'s request `id` with.
pub fn error_record(to: ConnId, id: u64, code: ErrorCode, message: &str) -> Frame {
    let body = json!({
        "kind": "error", "ts_us": now_us(), "from": "broker", "to": to, "id": id,
        "code": code.name(), "message": message,
    });
    Frame::publish(0, TOPICS[2], body.to_string().as_bytes(), false)
}

/// The record of an event published by `from` and what it reached.
pub fn event_record(from: ConnId, frame: &Frame, delivered: u64, dropped: u64) -> Frame {
    let payload = frame.payload();
    let body = json!({
        "kind": "event", "ts_us": now_us(), "from": from, "topic": frame.string(0),
        "bytes": payload.len(), "data": shown(&payload), "delivered": delivered, "dropped": dropped,
    });
    Frame::publish(0, TOPICS[3], body.to_string().as_bytes(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_that_see_the_feed() {
        assert!(is_monitor_pattern("plexus.monitor.*"));
        assert!(is_monitor_pattern("plexus.monitor.>"));
        assert!(is_monitor_pattern("plexus.monitor.call"));
        assert!(!is_monitor_pattern("plexus.>"));
        assert!(!is_monitor_pattern(">"));
        assert!(!is_monitor_pattern("*.monitor.call"));
        assert!(!is_monitor_pattern("plexus.other"));
        assert!(!is_monitor_pattern("sensor.>"));
    }
}
