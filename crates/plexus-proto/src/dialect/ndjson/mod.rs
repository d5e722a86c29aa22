//! NDJSON: one JSON object per `\n`-terminated line. JSON-RPC 2.0 requests are calls and
//! notifications are publishes; `op` lines carry the whole plexus operation set. The mapping is
//! specified in `docs/protocol.md`.

use std::borrow::Cow;
use std::collections::HashMap;

use bytes::{Buf, BufMut, BytesMut};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::{Decoded, DialectCodec, Fatal, payload_json, split_method};
use crate::error_code::ErrorCode;
use crate::frame::Frame;
use crate::kind::Kind;
use crate::names::validate_topic;

/// How an open request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// A JSON-RPC 2.0 response.
    Rpc,
    /// An `op` line.
    Op,
    /// A line both kinds of client understand, for errors not tied to a request.
    Either,
}

/// What an open request was, for the bookkeeping its answer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Call,
    Subscribe,
    Other,
}

/// A request of the peer waiting for its answer.
#[derive(Debug)]
struct Open {
    client_id: Box<RawValue>,
    style: Style,
    what: What,
}

/// The codec of one NDJSON connection.
#[derive(Debug)]
pub struct NdjsonCodec {
    max_frame: u32,
    /// Bytes at the front of the buffer already searched for a newline.
    scanned: usize,
    /// An over-long line is being skipped up to its newline.
    discarding: bool,
    next_id: u64,
    open: HashMap<u64, Open>,
    /// Open calls by the peer's id (its JSON text), for `cancel`.
    calls_by_client: HashMap<String, u64>,
    /// Subscriptions: frame id → the peer's id for it.
    subs: HashMap<u64, Box<RawValue>>,
    subs_by_client: HashMap<String, u64>,
}

/// Deserializes a field that is present (even as `null`) as `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CodeField {
    Number(u32),
    Name(String),
}

#[derive(Deserialize)]
struct ErrorField<'a> {
    code: Option<CodeField>,
    #[serde(default)]
    message: String,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    op: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    shared: bool,
    #[serde(borrow, default)]
    object: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pattern: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    topic: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<ErrorField<'a>>,
    #[serde(borrow, default, deserialize_with = "present")]
    sub: Option<&'a RawValue>,
    #[serde(borrow, default)]
    names: Option<&'a RawValue>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// The ops a peer may send.
const OPS: &str = "call, reply, error, cancel, register, unregister, subscribe, unsubscribe, publish, wait_for, ping";

fn raw_bytes(raw: Option<&RawValue>) -> &[u8] {
    raw.map(|r| r.get().as_bytes()).unwrap_or_default()
}

fn null() -> Box<RawValue> {
    RawValue::NULL.to_owned()
}

fn put_str(dst: &mut BytesMut, text: &str) {
    // Serializing a str cannot fail.
    let _ = serde_json::to_writer(dst.writer(), text);
}

fn timeout_aux(ms: Option<u64>) -> u32 {
    ms.map(|ms| u32::try_from(ms.max(1)).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

impl NdjsonCodec {
    /// A codec refusing lines longer than `max_frame` bytes.
    pub fn new(max_frame: u32) -> NdjsonCodec {
        NdjsonCodec {
            max_frame,
            scanned: 0,
            discarding: false,
            next_id: 0,
            open: HashMap::new(),
            calls_by_client: HashMap::new(),
            subs: HashMap::new(),
            subs_by_client: HashMap::new(),
        }
    }

    /// Opens a request: a fresh frame id remembered with the peer's id and answer style.
    fn open(&mut self, client_id: Option<&RawValue>, style: Style, what: What) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let client_id = client_id.map(RawValue::to_owned).unwrap_or_else(null);
        self.open.insert(
            id,
            Open {
                client_id,
                style,
                what,
            },
        );
        id
    }

    /// Answers with an error at once, in `style`, echoing `client_id`.
    fn refuse(
        &mut self,
        client_id: Option<&RawValue>,
        style: Style,
        code: ErrorCode,
        message: &str,
        out: &mut Vec<Decoded>,
    ) {
        let id = self.open(client_id, style, What::Other);
        out.push(Decoded::Answer(Frame::error(id, code, message, b"")));
    }

    fn line(&mut self, bytes: &[u8], out: &mut Vec<Decoded>) {
        let Ok(text) = std::str::from_utf8(bytes) else {
            let msg = "the line is not valid UTF-8";
            return self.refuse(None, Style::Either, ErrorCode::BadFrame, msg, out);
        };
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let line: Line<'_> = match serde_json::from_str(text) {
            Ok(l) => l,
            Err(e) => {
                let msg = format!("the line is not a JSON object: {e}");
                return self.refuse(None, Style::Either, ErrorCode::BadFrame, &msg, out);
            }
        };
        match line.op.as_deref() {
            Some(op) => self.op(op, &line, out),
            None if line.method.is_some() => self.json_rpc(&line, out),
            None => {
                let msg = "a line needs \"op\" or a JSON-RPC \"method\"";
                self.refuse(line.id, Style::Op, ErrorCode::BadFrame, msg, out);
            }
        }
    }

    fn json_rpc(&mut self, line: &Line<'_>, out: &mut Vec<Decoded>) {
        let method = line.method.as_deref().unwrap_or_default();
        let params = raw_bytes(line.params);
        let Some(client_id) = line.id else {
            // A notification is a publish; JSON-RPC answers notifications never, not even errors.
            if validate_topic(method).is_ok() {
                out.push(Decoded::Route(Frame::publish(0, method, params, false)));
            }
            return;
        };
        let Some((object, name)) = split_method(method) else {
            let msg = format!(
                "method {method:?} does not name an object; use \"object.method\" (split at the last dot)"
            );
            return self.refuse(
                Some(client_id),
                Style::Rpc,
                ErrorCode::InvalidParams,
                &msg,
                out,
            );
        };
        if let Some(id) = self.open_call(client_id, Style::Rpc, out) {
            let aux = timeout_aux(line.timeout_ms);
            out.push(Decoded::Route(Frame::call(id, object, name, aux, params)));
        }
    }

    /// Opens a call, refusing a client id already used by an open call.
    fn open_call(
        &mut self,
        client_id: &RawValue,
        style: Style,
        out: &mut Vec<Decoded>,
    ) -> Option<u64> {
        let key = client_id.get();
        if key != "null" && self.calls_by_client.contains_key(key) {
            let msg = format!("id {key} is already in use by an open call on this connection");
            self.refuse(Some(client_id), style, ErrorCode::InvalidParams, &msg, out);
            return None;
        }
        let id = self.open(Some(client_id), style, What::Call);
        if key != "null" {
            self.calls_by_client.insert(key.to_owned(), id);
        }
        Some(id)
    }

    fn op(&mut self, op: &str, line: &Line<'_>, out: &mut Vec<Decoded>) {
        let cid = line.id;
        let missing = |codec: &mut Self, field: &str, out: &mut Vec<Decoded>| {
            let msg = format!("op {op:?} needs \"{field}\"");
            codec.refuse(cid, Style::Op, ErrorCode::InvalidParams, &msg, out);
        };
        match op {
            "call" => {
                let (Some(object), Some(method)) = (&line.object, &line.method) else {
                    return missing(self, "object\" and \"method", out);
                };
                let client_id = cid.map(RawValue::to_owned).unwrap_or_else(null);
                if let Some(id) = self.open_call(&client_id, Style::Op, out) {
                    let aux = timeout_aux(line.timeout_ms);
                    let params = raw_bytes(line.params);
                    out.push(Decoded::Route(Frame::call(id, object, method, aux, params)));
                }
            }
            "register" | "unregister" => {
                let Some(name) = &line.name else {
                    return missing(self, "name", out);
                };
                let id = self.open(cid, Style::Op, What::Other);
                out.push(Decoded::Route(if op == "register" {
                    Frame::register(id, name, line.shared)
                } else {
                    Frame::unregister(id, name)
                }));
            }
            "subscribe" => {
                let (Some(pattern), Some(client_id)) = (&line.pattern, cid) else {
                    return missing(self, "pattern\" and \"id", out);
                };
                if self.subs_by_client.contains_key(client_id.get()) {
                    let msg = format!(
                        "subscription id {} is already in use on this connection",
                        client_id.get()
                    );
                    return self.refuse(cid, Style::Op, ErrorCode::InvalidParams, &msg, out);
                }
                let id = self.open(cid, Style::Op, What::Subscribe);
                self.subs.insert(id, client_id.to_owned());
                self.subs_by_client.insert(client_id.get().to_owned(), id);
                out.push(Decoded::Route(Frame::subscribe(id, pattern)));
            }
            "unsubscribe" => {
                let Some(sub) = line.sub.or(cid) else {
                    return missing(self, "sub", out);
                };
                if let Some(id) = self.subs_by_client.remove(sub.get()) {
                    self.subs.remove(&id);
                    out.push(Decoded::Route(Frame::unsubscribe(id)));
                }
            }
            "publish" => {
                let Some(topic) = &line.topic else {
                    return missing(self, "topic", out);
                };
                let data = raw_bytes(line.data);
                match cid {
                    Some(_) => {
                        let id = self.open(cid, Style::Op, What::Other);
                        out.push(Decoded::Route(Frame::publish(id, topic, data, true)));
                    }
                    None => match validate_topic(topic) {
                        Ok(()) => out.push(Decoded::Route(Frame::publish(0, topic, data, false))),
                        Err(e) => {
                            self.refuse(
                                None,
                                Style::Op,
                                ErrorCode::InvalidParams,
                                &e.to_string(),
                                out,
                            );
                        }
                    },
                }
            }
            "wait_for" => {
                let Some(names) = line.names else {
                    return missing(self, "names", out);
                };
                let mut params = br#"{"names":"#.to_vec();
                params.extend_from_slice(names.get().as_bytes());
                if let Some(ms) = line.timeout_ms {
                    params.extend_from_slice(format!(r#","timeout_ms":{ms}}}"#).as_bytes());
                } else {
                    params.push(b'}');
                }
                let id = self.open(cid, Style::Op, What::Other);
                let aux = timeout_aux(line.timeout_ms);
                out.push(Decoded::Route(Frame::call(
                    id,
                    crate::BROKER_OBJECT,
                    "wait_for",
                    aux,
                    &params,
                )));
            }
            "ping" => {
                let id = self.open(cid, Style::Op, What::Other);
                out.push(Decoded::Route(Frame::ping(id, raw_bytes(line.data))));
            }
            "cancel" => {
                let Some(client_id) = cid else {
                    return missing(self, "id", out);
                };
                if let Some(id) = self.calls_by_client.remove(client_id.get()) {
                    self.open.remove(&id);
                    out.push(Decoded::Route(Frame::cancel(id)));
                }
            }
            "reply" | "error" => {
                let Some(id) = cid.and_then(|r| serde_json::from_str::<u64>(r.get()).ok()) else {
                    let msg =
                        format!("op {op:?} answers an incoming call and needs its numeric \"id\"");
                    return self.refuse(cid, Style::Op, ErrorCode::InvalidParams, &msg, out);
                };
                out.push(Decoded::Route(if op == "reply" {
                    Frame::reply(id, raw_bytes(line.result))
                } else {
                    let (code, message, data) = match &line.error {
                        Some(e) => {
                            let code = match &e.code {
                                Some(CodeField::Number(n)) => ErrorCode::from_code(*n),
                                Some(CodeField::Name(n)) => ErrorCode::from_name(n),
                                None => None,
                            };
                            (
                                code.unwrap_or(ErrorCode::Internal),
                                e.message.as_str(),
                                raw_bytes(e.data),
                            )
                        }
                        None => (ErrorCode::Internal, "", &b""[..]),
                    };
                    Frame::error(id, code, message, data)
                }));
            }
            other => {
                let msg = format!("unknown op {other:?}; the ops are {OPS}");
                self.refuse(cid, Style::Op, ErrorCode::BadFrame, &msg, out);
            }
        }
    }

    fn put_answer_head(dst: &mut BytesMut, style: Style, op: &str, client_id: &RawValue) {
        match style {
            Style::Rpc => dst.put_slice(br#"{"jsonrpc":"2.0","id":"#),
            Style::Op => {
                dst.put_slice(br#"{"op":""#);
                dst.put_slice(op.as_bytes());
                dst.put_slice(br#"","id":"#);
            }
            Style::Either => {
                dst.put_slice(br#"{"jsonrpc":"2.0","op":""#);
                dst.put_slice(op.as_bytes());
                dst.put_slice(br#"","id":"#);
            }
        }
        dst.put_slice(client_id.get().as_bytes());
    }

    fn put_error(dst: &mut BytesMut, style: Style, client_id: &RawValue, frame: &Frame) {
        Self::put_answer_head(dst, style, "error", client_id);
        let code = frame.error_code();
        dst.put_slice(br#","error":{"code":"#);
        dst.put_slice(code.code().to_string().as_bytes());
        if style != Style::Rpc {
            dst.put_slice(br#","name":""#);
            dst.put_slice(code.name().as_bytes());
            dst.put_u8(b'"');
        }
        dst.put_slice(br#","message":"#);
        put_str(dst, frame.string(0));
        let data = frame.payload();
        if !data.is_empty() {
            dst.put_slice(br#","data":"#);
            dst.put_slice(payload_json(&data).get().as_bytes());
        }
        dst.put_slice(b"}}\n");
    }

    /// Ends the bookkeeping of an answered request.
    fn close(&mut self, id: u64, failed: bool) -> Option<Open> {
        let open = self.open.remove(&id)?;
        match open.what {
            What::Call => {
                self.calls_by_client.remove(open.client_id.get());
            }
            What::Subscribe if failed => {
                self.subs.remove(&id);
                self.subs_by_client.remove(open.client_id.get());
            }
            What::Subscribe | What::Other => {}
        }
        Some(open)
    }
}

impl DialectCodec for NdjsonCodec {
    fn decode(&mut self, buf: &mut BytesMut, out: &mut Vec<Decoded>) -> Result<(), Fatal> {
        let max = self.max_frame as usize;
        loop {
            if self.discarding {
                match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        buf.advance(i + 1);
                        self.discarding = false;
                    }
                    None => {
                        buf.clear();
                        return Ok(());
                    }
                }
            }
            let from = self.scanned.min(buf.len());
            match buf[from..].iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let end = from + i;
                    let line = buf.split_to(end + 1);
                    self.scanned = 0;
                    if end > max {
                        let msg = format!("a line of {end} bytes exceeds the limit of {max} bytes");
                        self.refuse(None, Style::Either, ErrorCode::FrameTooLarge, &msg, out);
                    } else {
                        self.line(&line[..end], out);
                    }
                }
                None => {
                    self.scanned = buf.len();
                    if buf.len() > max {
                        let msg = format!(
                            "a line longer than the limit of {max} bytes; it is skipped up to the next newline"
                        );
                        self.refuse(None, Style::Either, ErrorCode::FrameTooLarge, &msg, out);
                        buf.clear();
                        self.scanned = 0;
                        self.discarding = true;
                    }
                    return Ok(());
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut, out: &mut Vec<Decoded>) {
        if !self.discarding && !buf.is_empty() {
            let line = buf.split();
            self.line(&line, out);
        }
        self.scanned = 0;
    }

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut, _bounce: &mut Vec<Frame>) {
        match frame.kind() {
            Kind::Reply | Kind::Pong => {
                let Some(open) = self.close(frame.id(), false) else {
                    return;
                };
                let (op, field) = if frame.kind() == Kind::Reply {
                    ("reply", "result")
                } else {
                    ("pong", "data")
                };
                Self::put_answer_head(dst, open.style, op, &open.client_id);
                dst.put_slice(b",\"");
                dst.put_slice(field.as_bytes());
                dst.put_slice(b"\":");
                dst.put_slice(payload_json(&frame.payload()).get().as_bytes());
                dst.put_slice(b"}\n");
            }
            Kind::Error => match self.close(frame.id(), true) {
                Some(open) => Self::put_error(dst, open.style, &open.client_id, frame),
                None => Self::put_error(dst, Style::Either, &null(), frame),
            },
            Kind::Call => {
                dst.put_slice(br#"{"op":"call","id":"#);
                dst.put_slice(frame.id().to_string().as_bytes());
                dst.put_slice(br#","object":"#);
                put_str(dst, frame.string(0));
                dst.put_slice(br#","method":"#);
                put_str(dst, frame.string(1));
                dst.put_slice(br#","params":"#);
                dst.put_slice(payload_json(&frame.payload()).get().as_bytes());
                dst.put_slice(br#","timeout_ms":"#);
                dst.put_slice(frame.aux().to_string().as_bytes());
                dst.put_slice(b"}\n");
            }
            Kind::Cancel => {
                dst.put_slice(br#"{"op":"cancel","id":"#);
                dst.put_slice(frame.id().to_string().as_bytes());
                dst.put_slice(b"}\n");
            }
            Kind::Event => {
                let Some(sub) = self.subs.get(&frame.id()) else {
                    return;
                };
                dst.put_slice(br#"{"op":"event","sub":"#);
                dst.put_slice(sub.get().as_bytes());
                dst.put_slice(br#","topic":"#);
                put_str(dst, frame.string(0));
                dst.put_slice(br#","data":"#);
                dst.put_slice(payload_json(&frame.payload()).get().as_bytes());
                dst.put_slice(br#","dropped":"#);
                dst.put_slice(frame.aux().to_string().as_bytes());
                dst.put_slice(b"}\n");
            }
            _ => {}
        }
    }

    fn outstanding(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests;
