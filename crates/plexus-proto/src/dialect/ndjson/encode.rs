//! The lines written to an NDJSON peer: answers in the style of its request, and the calls,
//! cancels and events sent to workers and subscribers.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde_json::value::RawValue;

use super::Style;
use crate::dialect::payload_json;
use crate::frame::Frame;

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
    code: u32,
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

/// `raw` on one line: its CR and LF bytes, which valid JSON has only as whitespace between
/// tokens, become spaces. Payloads from other dialects and native peers may be pretty-printed.
fn one_line(raw: &RawValue) -> Cow<'_, RawValue> {
    let text = raw.get();
    if !text.bytes().any(|b| b == b'\n' || b == b'\r') {
        return Cow::Borrowed(raw);
    }
    let flat = text.replace(['\n', '\r'], " ");
    // Whitespace for whitespace leaves valid JSON valid.
    Cow::Owned(RawValue::from_string(flat).unwrap_or_else(|_| RawValue::NULL.to_owned()))
}

/// A payload as JSON on one line (see [`payload_json`] and [`one_line`]).
fn line_json(payload: &[u8]) -> Cow<'_, RawValue> {
    match payload_json(payload) {
        Cow::Borrowed(raw) => one_line(raw),
        // What payload_json makes itself is `null` or a JSON string: one line already.
        Cow::Owned(raw) => Cow::Owned(raw),
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

/// Appends the answer to an `Error` frame.
pub(super) fn put_error(dst: &mut BytesMut, style: Style, client_id: &RawValue, frame: &Frame) {
    let code = frame.error_code();
    let payload = frame.payload();
    let data = (!payload.is_empty()).then(|| line_json(&payload));
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
                code: code.code(),
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
