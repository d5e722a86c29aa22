//! The broker side of a ProcBridge connection: requests become calls, answers go back in
//! request order, and requests past the limit are answered `overloaded` in their turn.

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::turns::Turns;
use super::{Packet, Status, body_json, put_packet, take_packet};
use crate::dialect::{Decoded, DialectCodec, Fatal, frame_error_text, payload_json, split_method};
use crate::error_code::ErrorCode;
use crate::frame::Frame;
use crate::kind::Kind;

/// The body of a request packet as the broker reads it.
#[derive(Deserialize)]
struct RequestBody<'a> {
    method: Option<String>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

/// The body of a good response packet.
#[derive(Serialize)]
struct GoodOut<'a> {
    payload: &'a RawValue,
}

/// The body of an error response packet.
#[derive(Serialize)]
struct BadOut<'a> {
    message: &'a str,
}

/// The broker side of a ProcBridge connection: each request becomes a `call`, and answers are
/// written in the order the requests came.
#[derive(Debug)]
pub struct ProcBridgeCodec {
    max_frame: u32,
    /// Most requests that may wait for their answers; later ones are refused `overloaded`.
    max_outstanding: usize,
    turns: Turns,
    /// The answer to a request refused for being past `max_outstanding`.
    overloaded: BytesMut,
}

impl ProcBridgeCodec {
    /// A codec refusing packets over `max_frame` bytes, and answering `overloaded` to requests
    /// that come while `max_outstanding` (at least 1) wait for their answers.
    pub fn new(max_frame: u32, max_outstanding: usize) -> ProcBridgeCodec {
        let max_outstanding = max_outstanding.max(1);
        let text = format!(
            "overloaded: {max_outstanding} requests on this connection wait for their answers; \
             ProcBridge answers in order, so this one is refused"
        );
        ProcBridgeCodec {
            max_frame,
            max_outstanding,
            turns: Turns::new(),
            overloaded: bad_packet(&text),
        }
    }

    /// What a request packet means; `None` when it is refused behind the last turn.
    fn request(&mut self, packet: &Packet) -> Option<Decoded> {
        // Refused requests cost a counter, not a turn: the queue stays bounded whatever the
        // peer pipelines behind an answer that does not come.
        if self.turns.turns() >= self.max_outstanding && self.turns.refuse_behind() {
            return None;
        }
        let id = self.turns.push();
        let refuse = |code, message: String| Decoded::Answer(Frame::error(id, code, &message, b""));
        if packet.status != Status::Request as u8 {
            let msg = format!(
                "expected a request (status 0), got status {}",
                packet.status
            );
            return Some(refuse(ErrorCode::BadFrame, msg));
        }
        let body: RequestBody<'_> = match serde_json::from_slice(&packet.body) {
            Ok(b) => b,
            Err(e) => {
                let msg = format!("the request body is not a JSON object: {e}");
                return Some(refuse(ErrorCode::BadFrame, msg));
            }
        };
        let Some(method) = body.method else {
            let msg = "the request has no method; use \"object.method\"".to_owned();
            return Some(refuse(ErrorCode::InvalidParams, msg));
        };
        let Some((object, name)) = split_method(&method) else {
            let msg = format!(
                "method {method:?} does not name an object; use \"object.method\" (split at the last dot)"
            );
            return Some(refuse(ErrorCode::InvalidParams, msg));
        };
        let params = body.payload.map(|p| p.get().as_bytes()).unwrap_or_default();
        Some(Decoded::Route(Frame::call(id, object, name, 0, params)))
    }
}

/// The good response packet answering with `frame`'s payload.
fn good_packet(frame: &Frame) -> BytesMut {
    let payload = frame.payload();
    let body = body_json(&GoodOut {
        payload: &payload_json(&payload),
    });
    let mut packet = BytesMut::new();
    put_packet(&mut packet, Status::GoodResponse, &body);
    packet
}

/// The error response packet carrying `message`.
fn bad_packet(message: &str) -> BytesMut {
    let body = body_json(&BadOut { message });
    let mut packet = BytesMut::new();
    put_packet(&mut packet, Status::BadResponse, &body);
    packet
}

impl DialectCodec for ProcBridgeCodec {
    fn decode(&mut self, buf: &mut BytesMut, out: &mut Vec<Decoded>) -> Result<(), Fatal> {
        while let Some(packet) = take_packet(buf, self.max_frame)? {
            out.extend(self.request(&packet));
        }
        Ok(())
    }

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut, _bounce: &mut Vec<Frame>) {
        let id = frame.id();
        let open = self.turns.holds(id);
        let packet = match frame.kind() {
            Kind::Reply if open => good_packet(frame),
            Kind::Error if open => bad_packet(&frame_error_text(frame)),
            Kind::Error => {
                dst.extend_from_slice(&bad_packet(&frame_error_text(frame)));
                return;
            }
            _ => return,
        };
        self.turns.answer(id, packet, &self.overloaded, dst);
    }

    fn take_dropped_events(&mut self) -> u64 {
        // A ProcBridge peer cannot subscribe: no events come to it.
        0
    }

    fn outstanding(&self) -> usize {
        self.turns.waiting()
    }
}
