//! The lines written to an NDJSON peer: answers in the style of its request, and the calls,
//! cancels and events sent to workers and subscribers.

use std::collections::HashMap;

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::Style;
use crate::dialect::{line_json, one_line};
use crate::error_code::ErrorCode;
use crate::frame::Frame;

/// JSON-RPC 2.0's error codes (its section 5.1).
pub(super) mod rpc_code {
    /// Invalid JSON: the line could not be parsed.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist or is not available.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// An internal error.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The top of the range for implementation-defined server errors, -32000 to -32099.
    pub const SERVER_ERROR: i64 = -32000;
}

/// The JSON-RPC 2.0 code of a plexus error code: the predefined code where one means the same,
/// else a server error, -32000 minus the plexus code.
pub(super) fn json_rpc_code(code: ErrorCode) -> i64 {
    match code {
        ErrorCode::NoSuchObject | ErrorCode::NoSuchMethod => rpc_code::METHOD_NOT_FOUND,
        ErrorCode::InvalidParams => rpc_code::INVALID_PARAMS,
        ErrorCode::Internal => rpc_code::INTERNAL_ERROR,
        ErrorCode::BadFrame => rpc_code::INVALID_REQUEST,
        other => rpc_code::SERVER_ERROR - i64::from(other.code()),
    }
}

/// An answer: a JSON-RPC 2.0 response, an op line, or (for errors not tied to a request) both.
/// Exactly one of `result`, `data` and `error` is set.
#[derive(Serialize)]
struct Answer<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    jsonrpc: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    op: Option<&'static str>,
    id: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorObject<'a>>,
}

/// The `error` member of an answer; op lines also carry the code's name.
#[derive(Serialize)]
struct ErrorObject<'a> {
    code: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'static str>,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
}

/// A line the broker sends a worker or subscriber on its own.
#[derive(Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Push<'a> {
    Call {
        id: u64,
        object: &'a str,
        method: &'a str,
        params: &'a RawValue,
        timeout_ms: u32,
    },
    Cancel {
        id: u64,
    },
    Event {
        sub: &'a RawValue,
        topic: &'a str,
        data: &'a RawValue,
        dropped: u32,
    },
}

/// The parameters of `plexus.wait_for`, as an op line's `wait_for` asks for them.
#[derive(Serialize)]
pub(super) struct WaitForParams<'a> {
    /// The names to wait for, as the peer sent them.
    pub names: &'a RawValue,
    /// How long to wait, if the peer said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl WaitForParams<'_> {
    /// The JSON text of the parameters.
    pub fn to_json(&self) -> Vec<u8> {
        // Raw JSON and numbers always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Appends `line` and its newline to `dst`.
fn put_line(dst: &mut BytesMut, line: &impl Serialize) {
    // Strings, numbers and raw JSON always serialize, and a BytesMut always takes the bytes.
    let _ = serde_json::to_writer(dst.writer(), line);
    dst.put_u8(b'\n');
}

/// The `jsonrpc` and `op` members an answer in `style` carries.
fn head(style: Style, op: &'static str) -> (Option<&'static str>, Option<&'static str>) {
    match style {
        Style::Rpc => (Some("2.0"), None),
        Style::Op => (None, Some(op)),
        Style::Either => (Some("2.0"), Some(op)),
    }
}

/// Appends the answer to a `Reply` (`result`) or a `Pong` (`data`, op lines only).
pub(super) fn put_success(dst: &mut BytesMut, style: Style, client_id: &RawValue, frame: &Frame) {
    let payload = frame.payload();
    let value = line_json(&payload);
    let pong = frame.kind() == crate::kind::Kind::Pong;
    let (jsonrpc, op) = head(style, if pong { "pong" } else { "reply" });
    let (result, data) = if pong {
        (None, Some(&*value))
    } else {
        (Some(&*value), None)
    };
    put_line(
        dst,
        &Answer {
            jsonrpc,
            op,
            id: &one_line(client_id),
            result,
            data,
            error: None,
        },
    );
}

/// Members of the plexus error object that JSON-RPC's `data` carries, and the member holding the
/// error's own data when it cannot be merged in.
const RESERVED: [&str; 3] = ["plexus_code", "plexus_error", "plexus_data"];

/// The `data` of a JSON-RPC error: `{"plexus_code":N,"plexus_error":"name"}`, and the error's own
/// data: its members when it is a non-empty object without those names, else as `plexus_data`.
/// `raw` is the code as the frame has it (a code this side does not know keeps its number).
fn plexus_data(raw: u32, code: ErrorCode, payload: &[u8]) -> Box<RawValue> {
    let mut text = format!(
        "{{\"plexus_code\":{raw},\"plexus_error\":\"{}\"",
        code.name()
    );
    let json = line_json(payload);
    let members = serde_json::from_slice::<HashMap<String, IgnoredAny>>(payload)
        .is_ok_and(|m| !m.is_empty() && RESERVED.iter().all(|k| !m.contains_key(*k)))
        .then(|| json.get().trim().strip_prefix('{'))
        .flatten();
    match members {
        // The members of a non-empty object, and its closing brace.
        Some(members) => {
            text.push(',');
            text.push_str(members);
        }
        None => {
            if !payload.is_empty() {
                text.push_str(",\"plexus_data\":");
                text.push_str(json.get());
            }
            text.push('}');
        }
    }
    // Built from a JSON object's members, a number and a code name: valid JSON.
    RawValue::from_string(text).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// Appends the answer to an `Error` frame. A JSON-RPC answer has JSON-RPC's code (`rpc_code`
/// when the codec chose one, else [`json_rpc_code`]) and the plexus code in its data; an op line
/// has the plexus code, its name and the data as it is; a line for both has JSON-RPC's code, the
/// name, and the plexus data.
pub(super) fn put_error(
    dst: &mut BytesMut,
    style: Style,
    client_id: &RawValue,
    rpc_code: Option<i64>,
    frame: &Frame,
) {
    let (raw, code) = (frame.aux(), frame.error_code());
    let payload = frame.payload();
    let data = match style {
        Style::Op => (!payload.is_empty()).then(|| line_json(&payload).into_owned()),
        Style::Rpc | Style::Either => Some(plexus_data(raw, code, &payload)),
    };
    let number = match style {
        Style::Op => i64::from(raw),
        Style::Rpc | Style::Either => rpc_code.unwrap_or_else(|| json_rpc_code(code)),
    };
    let (jsonrpc, op) = head(style, "error");
    put_line(
        dst,
        &Answer {
            jsonrpc,
            op,
            id: &one_line(client_id),
            result: None,
            data: None,
            error: Some(ErrorObject {
                code: number,
                name: (style != Style::Rpc).then(|| code.name()),
                message: frame.string(0),
                data: data.as_deref(),
            }),
        },
    );
}

/// Appends an incoming call for a worker: `{"op":"call","id":N,...}`.
pub(super) fn put_call(dst: &mut BytesMut, frame: &Frame) {
    let payload = frame.payload();
    put_line(
        dst,
        &Push::Call {
            id: frame.id(),
            object: frame.string(0),
            method: frame.string(1),
            params: &line_json(&payload),
            timeout_ms: frame.aux(),
        },
    );
}

/// Appends a cancel of incoming call `id`.
pub(super) fn put_cancel(dst: &mut BytesMut, id: u64) {
    put_line(dst, &Push::Cancel { id });
}

/// Appends an event on the peer's subscription `sub`.
pub(super) fn put_event(dst: &mut BytesMut, sub: &RawValue, frame: &Frame) {
    let payload = frame.payload();
    put_line(
        dst,
        &Push::Event {
            sub: &one_line(sub),
            topic: frame.string(0),
            data: &line_json(&payload),
            dropped: frame.aux(),
        },
    );
}
