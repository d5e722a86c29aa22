//! The codec of one ipc-broker connection: its table of open requests and subscriptions, the
//! answers and events written back, and events held while the peer waits for an answer.

use std::collections::{HashMap, HashSet};

use bytes::BytesMut;

use super::messages::{Outgoing, to_json};
use super::{MAX_PACKET, put_packet, take_packet};
use crate::dialect::{Decoded, DialectCodec, Fatal, coded_message, error_text, payload_json};
use crate::error_code::ErrorCode;
use crate::frame::Frame;
use crate::kind::Kind;

/// Bytes of events held back while the peer waits for an answer; more are dropped.
const HELD_LIMIT: usize = 1024 * 1024;

/// Most bytes of an error's message kept when the whole error does not fit a packet: escaped
/// six times over (`\u0001`), it still fits.
const CUT_MESSAGE: usize = 8 * 1024;

/// A request of the peer waiting for its answer.
#[derive(Debug)]
pub(super) enum Open {
    /// A call; answered `Result` or `Error` with the peer's call id.
    Call { call_id: String, object: String },
    /// `RegisterObject` (answered `Registered`) or a refused `RegisterService`.
    Register { object: String },
    /// `HasObject`, asked as `plexus.wait_for` with a zero timeout.
    HasObject { object: String },
    /// `Subscribe`, which ipc-broker's client does not wait for: its answer is not sent.
    Subscribe,
}

/// The codec of one ipc-broker connection.
#[derive(Debug)]
pub struct IpcBrokerCodec {
    max_frame: u32,
    /// Most requests that may wait for answers; later ones are refused `overloaded`.
    max_outstanding: usize,
    next_id: u64,
    open: HashMap<u64, Open>,
    /// Open requests whose answer the peer waits for (all but subscriptions).
    awaited: usize,
    /// Subscriptions: frame id → (object, topic) as the peer subscribed.
    pub(super) subs: HashMap<u64, (String, String)>,
    /// The (object, topic) pairs of `subs`.
    pub(super) pairs: HashSet<(String, String)>,
    /// Events held while the peer waits for an answer: its client reads the next packet after a
    /// request as that request's answer.
    held: Vec<u8>,
    /// Events not written (too large for a packet, over the held limit, or for no subscription)
    /// since the last count.
    dropped_events: u64,
}

impl IpcBrokerCodec {
    /// A codec refusing packets over `max_frame` bytes, and answering `overloaded` to requests
    /// that come while `max_outstanding` wait for their answers.
    pub fn new(max_frame: u32, max_outstanding: usize) -> IpcBrokerCodec {
        IpcBrokerCodec {
            max_frame,
            max_outstanding,
            next_id: 0,
            open: HashMap::new(),
            awaited: 0,
            subs: HashMap::new(),
            pairs: HashSet::new(),
            held: Vec::new(),
            dropped_events: 0,
        }
    }

    /// Remembers a request under a fresh frame id.
    pub(super) fn remember(&mut self, what: Open) -> u64 {
        if !matches!(what, Open::Subscribe) {
            self.awaited += 1;
        }
        self.next_id += 1;
        self.open.insert(self.next_id, what);
        self.next_id
    }

    /// Opens a request and routes the frame `frame` builds for its id, or, when
    /// `max_outstanding` requests wait already, answers it `overloaded` at once.
    pub(super) fn route(&mut self, what: Open, frame: impl FnOnce(u64) -> Frame) -> Decoded {
        let full = self.full();
        let id = self.remember(what);
        if full {
            let msg = format!(
                "{} requests on this connection already wait for their answers; try again later",
                self.max_outstanding
            );
            return Decoded::Answer(Frame::error(id, ErrorCode::Overloaded, &msg, b""));
        }
        Decoded::Route(frame(id))
    }

    /// Whether no more requests can be opened now.
    pub(super) fn full(&self) -> bool {
        self.open.len() >= self.max_outstanding
    }

    /// Forgets an answered request.
    fn close(&mut self, id: u64) -> Option<Open> {
        let open = self.open.remove(&id)?;
        if !matches!(open, Open::Subscribe) {
            self.awaited -= 1;
        }
        Some(open)
    }

    /// Writes the event `body` as a packet now, or holds it if the peer waits for an answer;
    /// counts it dropped when the held events are at their limit.
    fn put_event(&mut self, body: &[u8], dst: &mut BytesMut) {
        if self.awaited == 0 {
            put_packet(dst, body);
        } else if self.held.len() + 4 + body.len() <= HELD_LIMIT {
            let mut packet = BytesMut::new();
            put_packet(&mut packet, body);
            self.held.extend_from_slice(&packet);
        } else {
            self.dropped_events += 1;
        }
    }

    /// Writes the answer to a request of the peer, then the events held while it waited.
    fn answer(&mut self, frame: &Frame, dst: &mut BytesMut) {
        let failed = frame.kind() == Kind::Error;
        let payload = frame.payload();
        let error = |call_id, object| {
            let (code, message) = (frame.error_code(), frame.string(0));
            error_body(call_id, object, code, message, &payload)
        };
        let Some(open) = self.close(frame.id()) else {
            if failed {
                put_packet(dst, &error(None, ""));
            }
            return;
        };
        let body = match &open {
            Open::Call { call_id, object } if failed => error(Some(call_id), object),
            Open::Call { call_id, object } => result_body(call_id, object, frame),
            Open::Register { object } if failed => error(None, object),
            Open::Register { object } => to_json(&Outgoing::Registered {
                object_name: object,
            }),
            Open::HasObject { object } => to_json(&Outgoing::HasObjectResult {
                object_name: object,
                exists: !failed,
            }),
            Open::Subscribe => {
                if failed && let Some(pair) = self.subs.remove(&frame.id()) {
                    self.pairs.remove(&pair);
                }
                return;
            }
        };
        put_packet(dst, &body);
        if self.awaited == 0 && !self.held.is_empty() {
            dst.extend_from_slice(&self.held);
            self.held.clear();
        }
    }
}

/// The `Result` of call `call_id` on `object` carrying `frame`'s payload, or an `Error` if it
/// would not fit a packet.
fn result_body(call_id: &str, object: &str, frame: &Frame) -> Vec<u8> {
    let payload = frame.payload();
    let value = payload_json(&payload);
    let body = to_json(&Outgoing::Result {
        call_id,
        object_name: object,
        value: &value,
    });
    if body.len() <= MAX_PACKET {
        return body;
    }
    let message = format!(
        "the result of {} bytes does not fit ipc-broker's {MAX_PACKET}-byte packets",
        body.len()
    );
    error_body(
        Some(call_id),
        object,
        ErrorCode::FrameTooLarge,
        &message,
        b"",
    )
}

/// The `Error` carrying `code`, `message` and the error's data (see [`error_text`]). When that
/// does not fit a packet the data is left out and the message cut to [`CUT_MESSAGE`] bytes, and
/// the text says so.
fn error_body(
    call_id: Option<&str>,
    object_name: &str,
    code: ErrorCode,
    message: &str,
    data: &[u8],
) -> Vec<u8> {
    let body = |text: &str| {
        to_json(&Outgoing::Error {
            call_id,
            object_name,
            message: text,
        })
    };
    let whole = body(&error_text(code, message, data));
    if whole.len() <= MAX_PACKET {
        return whole;
    }
    let kept = crate::frame::truncate_utf8(message, CUT_MESSAGE);
    let cut = format!(
        "{kept} [cut to fit ipc-broker's {MAX_PACKET}-byte packets: {} of {} message bytes kept, {} data bytes left out]",
        kept.len(),
        message.len(),
        data.len()
    );
    body(&coded_message(code, &cut))
}

impl DialectCodec for IpcBrokerCodec {
    fn decode(&mut self, buf: &mut BytesMut, out: &mut Vec<Decoded>) -> Result<(), Fatal> {
        while let Some(body) = take_packet(buf, self.max_frame)? {
            let decoded = self.packet(&body);
            out.push(decoded);
        }
        Ok(())
    }

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut, bounce: &mut Vec<Frame>) {
        match frame.kind() {
            Kind::Reply | Kind::Error => self.answer(frame, dst),
            Kind::Call => {
                let payload = frame.payload();
                let args = payload_json(&payload);
                let body = to_json(&Outgoing::Call {
                    call_id: frame.id().to_string(),
                    object_name: frame.string(0),
                    method: frame.string(1),
                    args: &args,
                });
                if body.len() > MAX_PACKET {
                    let msg = format!(
                        "the call of {} bytes does not fit ipc-broker's {MAX_PACKET}-byte packets",
                        body.len()
                    );
                    let code = ErrorCode::FrameTooLarge;
                    bounce.push(Frame::error(frame.id(), code, &msg, b""));
                } else {
                    put_packet(dst, &body);
                }
            }
            Kind::Event => {
                let Some((object, topic)) = self.subs.get(&frame.id()) else {
                    // ipc-broker peers cannot unsubscribe, so the router sends none such; one
                    // that came anyway is counted like any event not written.
                    self.dropped_events += 1;
                    return;
                };
                let payload = frame.payload();
                let args = payload_json(&payload);
                let body = to_json(&Outgoing::Event {
                    object_name: object,
                    topic,
                    args: &args,
                });
                if body.len() <= MAX_PACKET {
                    self.put_event(&body, dst);
                } else {
                    self.dropped_events += 1;
                }
            }
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
