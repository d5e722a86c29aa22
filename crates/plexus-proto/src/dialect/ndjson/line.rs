//! Reading one line: the members a line may carry, and JSON-RPC 2.0 requests and notifications.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::encode::rpc_code;
use super::{NdjsonCodec, Style, What};
use crate::dialect::{Decoded, split_method};
use crate::error_code::ErrorCode;
use crate::frame::Frame;
use crate::names::validate_topic;

/// Deserializes a member that is present (even as `null`) as `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// An error code as a peer may give it: the number or the name.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum CodeField {
    /// The stable number.
    Number(u32),
    /// The snake_case name.
    Name(String),
}

/// The `error` member of an `error` op line.
#[derive(Deserialize)]
pub(super) struct ErrorField<'a> {
    /// The code, if given.
    pub code: Option<CodeField>,
    /// What went wrong.
    #[serde(default)]
    pub message: String,
    /// Extra JSON data.
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
}

/// Every member a line of either kind may carry.
#[derive(Deserialize)]
pub(super) struct Line<'a> {
    #[serde(borrow, default)]
    pub jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub op: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present")]
    pub id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(default)]
    pub shared: bool,
    #[serde(borrow, default)]
    pub object: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub pattern: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub topic: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub error: Option<ErrorField<'a>>,
    #[serde(borrow, default, deserialize_with = "present")]
    pub sub: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub names: Option<&'a RawValue>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// The bytes of an optional JSON member; empty when it is absent.
pub(super) fn raw_bytes(raw: Option<&RawValue>) -> &[u8] {
    raw.map(|r| r.get().as_bytes()).unwrap_or_default()
}

/// A call's `aux` for a timeout: 0 (the broker's default) when none is given, at least 1 ms.
pub(super) fn timeout_aux(ms: Option<u64>) -> u32 {
    ms.map(|ms| u32::try_from(ms.max(1)).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

impl NdjsonCodec {
    /// Decodes one line (without its newline).
    pub(super) fn line(&mut self, bytes: &[u8], out: &mut Vec<Decoded>) {
        let (bad_frame, parse_error) = (ErrorCode::BadFrame, rpc_code::PARSE_ERROR);
        let Ok(text) = std::str::from_utf8(bytes) else {
            let msg = "the line is not valid UTF-8";
            return self.refuse_rpc(None, Style::Either, bad_frame, parse_error, msg, out);
        };
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let line: Line<'_> = match serde_json::from_str(text) {
            Ok(l) if text.starts_with('{') => l,
            // serde also reads a struct from an array; JSON-RPC batches are not taken.
            Ok(_) => {
                let msg = "the line is JSON but not an object (JSON-RPC batches are not supported)";
                return self.refuse(None, Style::Either, ErrorCode::BadFrame, msg, out);
            }
            // Valid JSON of the wrong shape is an invalid request; anything else a parse error.
            Err(e) if e.classify() == serde_json::error::Category::Data => {
                let msg = format!("the line is not a valid request object: {e}");
                return self.refuse(None, Style::Either, ErrorCode::BadFrame, &msg, out);
            }
            Err(e) => {
                let msg = format!("the line is not JSON: {e}");
                return self.refuse_rpc(None, Style::Either, bad_frame, parse_error, &msg, out);
            }
        };
        match line.op.as_deref() {
            Some(op) => self.op(op, &line, out),
            None if line.method.is_some() => self.json_rpc(&line, out),
            None if line.jsonrpc.is_some() => {
                let msg = "a JSON-RPC request needs \"method\"";
                self.refuse(line.id, Style::Rpc, ErrorCode::BadFrame, msg, out);
            }
            None => {
                let msg = "a line needs \"op\" or a JSON-RPC \"method\"";
                self.refuse(line.id, Style::Op, ErrorCode::BadFrame, msg, out);
            }
        }
    }

    /// A JSON-RPC request (a call) or notification (a publish).
    fn json_rpc(&mut self, line: &Line<'_>, out: &mut Vec<Decoded>) {
        let method = line.method.as_deref().unwrap_or_default();
        let params = raw_bytes(line.params);
        let Some(client_id) = line.id else {
            // A notification is a publish; JSON-RPC answers notifications never, not even errors.
            out.push(match validate_topic(method) {
                Ok(()) => Decoded::Route(Frame::publish(0, method, params, false)),
                Err(e) => Decoded::Dropped(format!("a notification's publish refused: {e}")),
            });
            return;
        };
        let Some((object, name)) = split_method(method) else {
            let msg = format!(
                "method {method:?} does not name an object; use \"object.method\" (split at the last dot)"
            );
            let (code, rpc) = (ErrorCode::InvalidParams, rpc_code::METHOD_NOT_FOUND);
            return self.refuse_rpc(Some(client_id), Style::Rpc, code, rpc, &msg, out);
        };
        if let Some(id) = self.open_call(client_id, Style::Rpc, out) {
            let aux = timeout_aux(line.timeout_ms);
            out.push(Decoded::Route(Frame::call(id, object, name, aux, params)));
        }
    }

    /// Opens a call, refusing a client id already used by an open call.
    pub(super) fn open_call(
        &mut self,
        client_id: &RawValue,
        style: Style,
        out: &mut Vec<Decoded>,
    ) -> Option<u64> {
        let key = client_id.get();
        if key != "null" && self.calls_by_client.contains_key(key) {
            let msg = format!("id {key} is already in use by an open call on this connection");
            let (code, rpc) = (ErrorCode::InvalidParams, rpc_code::INVALID_REQUEST);
            self.refuse_rpc(Some(client_id), style, code, rpc, &msg, out);
            return None;
        }
        let id = self.open(Some(client_id), style, What::Call, out)?;
        if key != "null" {
            self.calls_by_client.insert(key.to_owned(), id);
        }
        Some(id)
    }
}
