//! NDJSON: one JSON object per `\n`-terminated line. JSON-RPC 2.0 requests are calls and
//! notifications are publishes; `op` lines carry the whole plexus operation set. The mapping is
//! specified in `docs/protocol.md`.

use std::collections::HashMap;

use bytes::{Buf, BytesMut};
use serde_json::value::RawValue;

use super::{Decoded, DialectCodec, Fatal};
use crate::error_code::ErrorCode;
use crate::frame::Frame;
use crate::kind::Kind;

mod encode;
mod line;
mod ops;

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
    /// A call, findable by the peer's id for `cancel`.
    Call,
    /// A subscription, forgotten if it is refused.
    Subscribe,
    /// Anything else.
    Other,
}

/// A request of the peer waiting for its answer.
#[derive(Debug)]
struct Open {
    client_id: Box<RawValue>,
    style: Style,
    what: What,
    /// The JSON-RPC code of a refusal whose plexus code does not tell it (a parse error, a
    /// reused id, a method that names no object).
    rpc_code: Option<i64>,
}

/// The codec of one NDJSON connection.
#[derive(Debug)]
pub struct NdjsonCodec {
    max_frame: u32,
    /// Most requests that may wait for answers; later ones are refused `overloaded`.
    max_outstanding: usize,
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
    /// Events for subscriptions the peer already ended, not written since the last count.
    dropped_events: u64,
}

impl NdjsonCodec {
    /// A codec refusing lines longer than `max_frame` bytes, and answering `overloaded` to
    /// requests that come while `max_outstanding` wait for their answers.
    pub fn new(max_frame: u32, max_outstanding: usize) -> NdjsonCodec {
        NdjsonCodec {
            max_frame,
            max_outstanding,
            scanned: 0,
            discarding: false,
            next_id: 0,
            open: HashMap::new(),
            calls_by_client: HashMap::new(),
            subs: HashMap::new(),
            subs_by_client: HashMap::new(),
            dropped_events: 0,
        }
    }

    /// Opens a request for the router: a fresh frame id remembered with the peer's id and answer
    /// style. `None` when `max_outstanding` requests wait already: this one is refused
    /// `overloaded` instead.
    fn open(
        &mut self,
        client_id: Option<&RawValue>,
        style: Style,
        what: What,
        out: &mut Vec<Decoded>,
    ) -> Option<u64> {
        if self.open.len() >= self.max_outstanding {
            let msg = format!(
                "{} requests on this connection already wait for their answers; try again later",
                self.max_outstanding
            );
            self.refuse(client_id, style, ErrorCode::Overloaded, &msg, out);
            return None;
        }
        Some(self.remember(client_id, style, what))
    }

    /// Remembers a request under a fresh frame id with the peer's id and answer style.
    fn remember(&mut self, client_id: Option<&RawValue>, style: Style, what: What) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let client_id = client_id.unwrap_or(RawValue::NULL).to_owned();
        self.open.insert(
            id,
            Open {
                client_id,
                style,
                what,
                rpc_code: None,
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
        let id = self.remember(client_id, style, What::Other);
        out.push(Decoded::Answer(Frame::error(id, code, message, b"")));
    }

    /// Like [`NdjsonCodec::refuse`], with `rpc_code` as the JSON-RPC code of the answer where
    /// JSON-RPC has a closer code than the plexus code's.
    fn refuse_rpc(
        &mut self,
        client_id: Option<&RawValue>,
        style: Style,
        code: ErrorCode,
        rpc_code: i64,
        message: &str,
        out: &mut Vec<Decoded>,
    ) {
        let id = self.remember(client_id, style, What::Other);
        if let Some(open) = self.open.get_mut(&id) {
            open.rpc_code = Some(rpc_code);
        }
        out.push(Decoded::Answer(Frame::error(id, code, message, b"")));
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
                if let Some(open) = self.close(frame.id(), false) {
                    encode::put_success(dst, open.style, &open.client_id, frame);
                }
            }
            Kind::Error => match self.close(frame.id(), true) {
                Some(open) => {
                    encode::put_error(dst, open.style, &open.client_id, open.rpc_code, frame);
                }
                None => encode::put_error(dst, Style::Either, RawValue::NULL, None, frame),
            },
            Kind::Call => encode::put_call(dst, frame),
            Kind::Cancel => encode::put_cancel(dst, frame.id()),
            Kind::Event => match self.subs.get(&frame.id()) {
                Some(sub) => encode::put_event(dst, sub, frame),
                // Queued before the router saw the peer's unsubscribe.
                None => self.dropped_events += 1,
            },
            _ => {}
        }
    }

    fn take_dropped_events(&mut self) -> u64 {
        std::mem::take(&mut self.dropped_events)
    }

    fn outstanding(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests;
