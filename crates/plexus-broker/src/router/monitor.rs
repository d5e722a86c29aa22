//! The monitor feed's records: JSON copies of the calls, answers, errors and events the broker
//! routes (like dbus-monitor), published on `plexus.monitor.*`. The router builds them only while
//! someone subscribes to the feed.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plexus_proto::{ErrorCode, Frame, Kind, topic_matches};
use serde::Serialize;
use serde_json::value::RawValue;

use super::raw_json;
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

/// A payload as a record shows it.
#[derive(Serialize)]
#[serde(untagged)]
enum Shown<'a> {
    /// JSON, embedded as it is.
    Json(&'a RawValue),
    /// Anything else (not JSON, or nested too deep to embed) as a string of its bytes.
    Text(Cow<'a, str>),
}

/// How a record shows a payload: `null` when empty or over [`SHOWN_PAYLOAD`] bytes, else the
/// JSON itself, or a string when it is not JSON that can be embedded. Nothing is parsed into a
/// tree, so no payload can make building a record fail.
fn shown(payload: &[u8]) -> Option<Shown<'_>> {
    if payload.is_empty() || payload.len() > SHOWN_PAYLOAD {
        return None;
    }
    Some(match raw_json::embeddable(payload) {
        Some(raw) => Shown::Json(raw),
        None => Shown::Text(String::from_utf8_lossy(payload)),
    })
}

/// A record as the feed publishes it.
fn publish(topic: &str, record: &impl Serialize) -> Frame {
    // Serializing these records cannot fail: they hold strings, numbers and valid raw JSON.
    let body = serde_json::to_vec(record).unwrap_or_default();
    Frame::publish(0, topic, &body, false)
}

/// A connection as a record names it: its id, the client name it gave in `hello` and its pid
/// (Unix socket peers).
#[derive(Debug, Clone, Copy)]
pub struct Party<'a> {
    /// The connection id.
    pub conn: ConnId,
    /// Its client name (empty when it is gone or gave none).
    pub client: &'a str,
    /// Its process id.
    pub pid: Option<i32>,
}

/// A record's `from`, `from_client` and `from_pid`: the party that sent what it shows.
#[derive(Serialize)]
struct Sender<'a> {
    from: ConnId,
    from_client: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_pid: Option<i32>,
}

impl<'a> From<Party<'a>> for Sender<'a> {
    fn from(party: Party<'a>) -> Self {
        Sender {
            from: party.conn,
            from_client: party.client,
            from_pid: party.pid,
        }
    }
}

/// A record's `to`, `to_client` and `to_pid`: the party it went to.
#[derive(Serialize)]
struct Recipient<'a> {
    to: ConnId,
    to_client: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    to_pid: Option<i32>,
}

impl<'a> From<Party<'a>> for Recipient<'a> {
    fn from(party: Party<'a>) -> Self {
        Recipient {
            to: party.conn,
            to_client: party.client,
            to_pid: party.pid,
        }
    }
}

/// How a record of something routed from one connection to another begins: its kind, when
/// (`ts_us`), and the two parties.
#[derive(Serialize)]
struct Routed<'a> {
    kind: &'static str,
    ts_us: u128,
    #[serde(flatten)]
    from: Sender<'a>,
    #[serde(flatten)]
    to: Recipient<'a>,
}

impl<'a> Routed<'a> {
    /// The beginning of a record of `kind`, now, of something sent by `from` to `to`.
    fn new(kind: &'static str, from: Party<'a>, to: Party<'a>) -> Self {
        Routed {
            kind,
            ts_us: now_us(),
            from: from.into(),
            to: to.into(),
        }
    }
}

/// What a call was: its routed id once it was routed, and its object and method when known (a
/// routed call's are kept only while someone watches the feed).
#[derive(Debug, Clone, Copy, Default)]
pub struct CallName<'a> {
    /// The routed call id; `None` for a call the broker refused before routing it.
    pub call_id: Option<u64>,
    /// The called object.
    pub object: Option<&'a str>,
    /// The called method.
    pub method: Option<&'a str>,
}

impl CallName<'static> {
    /// A `plexus.wait_for` call (never routed).
    pub const WAIT_FOR: CallName<'static> = CallName {
        call_id: None,
        object: Some("plexus"),
        method: Some("wait_for"),
    };
}

#[derive(Serialize)]
struct CallRecord<'a> {
    #[serde(flatten)]
    head: Routed<'a>,
    call_id: u64,
    object: &'a str,
    method: &'a str,
    timeout_ms: u32,
    bytes: usize,
    params: Option<Shown<'a>>,
}

/// The record of a call routed from `from` to `to` as `call_id`.
pub fn call_record(from: Party<'_>, to: Party<'_>, call_id: u64, frame: &Frame) -> Frame {
    let payload = frame.payload();
    let record = CallRecord {
        head: Routed::new("call", from, to),
        call_id,
        object: frame.string(0),
        method: frame.string(1),
        timeout_ms: frame.aux(),
        bytes: payload.len(),
        params: shown(&payload),
    };
    publish(TOPICS[0], &record)
}

#[derive(Serialize)]
struct AnswerRecord<'a> {
    #[serde(flatten)]
    head: Routed<'a>,
    call_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    elapsed_us: u128,
    bytes: usize,
    result: Option<Shown<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

/// The record of a worker's answer to `call`, `elapsed` after the call, as forwarded; its
/// object and method are named when the broker kept them (it was watched when routed).
pub fn answer_record(
    from: Party<'_>,
    to: Party<'_>,
    call: CallName<'_>,
    elapsed: Duration,
    frame: &Frame,
) -> Frame {
    let payload = frame.payload();
    let error = frame.kind() == Kind::Error;
    let record = AnswerRecord {
        head: Routed::new(if error { "error" } else { "reply" }, from, to),
        call_id: call.call_id.unwrap_or_default(),
        object: call.object,
        method: call.method,
        elapsed_us: elapsed.as_micros(),
        bytes: payload.len(),
        result: shown(&payload),
        code: error.then(|| frame.error_code().name()),
        message: error.then(|| frame.string(0)),
    };
    publish(if error { TOPICS[2] } else { TOPICS[1] }, &record)
}

#[derive(Serialize)]
struct BrokerErrorRecord<'a> {
    kind: &'static str,
    ts_us: u128,
    from: &'static str,
    #[serde(flatten)]
    to: Recipient<'a>,
    id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    code: &'static str,
    message: &'a str,
    /// For a refusal by a contract: what was checked (`params`, `result` or `payload`).
    #[serde(skip_serializing_if = "Option::is_none")]
    contract: Option<&'static str>,
}

/// The record of an error the broker itself answered `to`'s request `id` with; `call` names the
/// call it ends or refuses, when the request was a call (else it is empty).
pub fn error_record(
    to: Party<'_>,
    id: u64,
    call: CallName<'_>,
    code: ErrorCode,
    message: &str,
) -> Frame {
    broker_error(to, id, call, code, message, None)
}

/// The record of a call or publish a contract refused (or of a result it refused, ending the
/// call): an error record marked with what was checked.
pub fn refusal_record(
    to: Party<'_>,
    id: u64,
    call: CallName<'_>,
    code: ErrorCode,
    message: &str,
    checked: &'static str,
) -> Frame {
    broker_error(to, id, call, code, message, Some(checked))
}

/// An error record from the broker, marked with what a contract checked if it was a refusal.
fn broker_error(
    to: Party<'_>,
    id: u64,
    call: CallName<'_>,
    code: ErrorCode,
    message: &str,
    contract: Option<&'static str>,
) -> Frame {
    let record = BrokerErrorRecord {
        kind: "error",
        ts_us: now_us(),
        from: "broker",
        to: to.into(),
        id,
        call_id: call.call_id,
        object: call.object,
        method: call.method,
        code: code.name(),
        message,
        contract,
    };
    publish(TOPICS[2], &record)
}

#[derive(Serialize)]
struct EventRecord<'a> {
    kind: &'static str,
    ts_us: u128,
    #[serde(flatten)]
    from: Sender<'a>,
    topic: &'a str,
    bytes: usize,
    data: Option<Shown<'a>>,
    delivered: u64,
    dropped: u64,
}

/// The record of an event published by `from` and what it reached.
pub fn event_record(from: Party<'_>, frame: &Frame, delivered: u64, dropped: u64) -> Frame {
    let payload = frame.payload();
    let record = EventRecord {
        kind: "event",
        ts_us: now_us(),
        from: from.into(),
        topic: frame.string(0),
        bytes: payload.len(),
        data: shown(&payload),
        delivered,
        dropped,
    };
    publish(TOPICS[3], &record)
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

    fn shown_json(payload: &[u8]) -> serde_json::Value {
        let text = serde_json::to_string(&shown(payload)).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_default()
    }

    #[test]
    fn payloads_are_shown_as_json_as_text_or_not_at_all() {
        assert_eq!(
            shown_json(br#"{"a":[1,2]}"#),
            serde_json::json!({"a":[1,2]})
        );
        assert_eq!(shown_json(b"not json"), "not json");
        assert_eq!(shown_json(b"\xff1"), "\u{fffd}1");
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(shown_json(deep.as_bytes()), deep.as_str());
        assert_eq!(shown_json(b""), serde_json::Value::Null);
        assert_eq!(
            shown_json(&[b'1'; SHOWN_PAYLOAD + 1]),
            serde_json::Value::Null
        );
    }
}
