//! ProcBridge: packets of `pb`, a 2-byte version, a status byte, 2 reserved bytes, a u32
//! little-endian body length and a JSON body. Requests are calls to `object.method`; answers go
//! back in request order, since the protocol has no request ids.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Decoded, DialectCodec, Fatal, frame_error_text, payload_json, split_method};
use crate::error_code::ErrorCode;
use crate::frame::Frame;
use crate::kind::Kind;

/// The two bytes every packet starts with.
pub const MAGIC: [u8; 2] = *b"pb";
/// The version this side writes (the PyPI client 1.2 accepts only this one).
pub const VERSION: [u8; 2] = [1, 1];
/// Bytes before the body.
pub const HEADER_LEN: usize = 11;

/// A packet's status byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// A request: `{"method": M, "payload": P}`.
    Request = 0,
    /// A good response: `{"payload": R}`.
    GoodResponse = 1,
    /// An error response: `{"message": TEXT}`.
    BadResponse = 2,
}

/// One packet: its version, status byte and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The version bytes.
    pub version: [u8; 2],
    /// The status byte as sent (see [`Status`]).
    pub status: u8,
    /// The JSON body.
    pub body: Bytes,
}

/// Appends a packet to `dst`.
pub fn put_packet(dst: &mut BytesMut, status: Status, body: &[u8]) {
    dst.reserve(HEADER_LEN + body.len());
    dst.put_slice(&MAGIC);
    dst.put_slice(&VERSION);
    dst.put_u8(status as u8);
    dst.put_slice(&[0, 0]);
    // Bodies come from frames, which are at most u32::MAX bytes long.
    dst.put_u32_le(body.len() as u32);
    dst.put_slice(body);
}

/// Takes one packet off the front of `buf`; `Ok(None)` when more bytes are needed. A packet
/// larger than `max_frame` is refused as soon as its header is in.
pub fn take_packet(buf: &mut BytesMut, max_frame: u32) -> Result<Option<Packet>, Fatal> {
    if buf.len() < HEADER_LEN {
        if buf.len() >= 2 && buf[..2] != MAGIC {
            return Err(bad_magic(&buf[..2]));
        }
        return Ok(None);
    }
    if buf[..2] != MAGIC {
        return Err(bad_magic(&buf[..2]));
    }
    if buf[2] != VERSION[0] {
        return Err(Fatal::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "ProcBridge version {}.{} is not supported; this side speaks 1.x",
                buf[2], buf[3]
            ),
        ));
    }
    let body_len = u32::from_le_bytes([buf[7], buf[8], buf[9], buf[10]]);
    let size = HEADER_LEN as u64 + u64::from(body_len);
    if size > u64::from(max_frame) {
        return Err(Fatal::new(
            ErrorCode::FrameTooLarge,
            format!("packet of {size} bytes exceeds the limit of {max_frame} bytes"),
        ));
    }
    let total = HEADER_LEN + body_len as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let version = [buf[2], buf[3]];
    let status = buf[4];
    buf.advance(HEADER_LEN);
    let body = buf.split_to(body_len as usize).freeze();
    Ok(Some(Packet {
        version,
        status,
        body,
    }))
}

fn bad_magic(first: &[u8]) -> Fatal {
    Fatal::new(
        ErrorCode::BadFrame,
        format!("bad magic bytes {first:02x?}: expected \"pb\""),
    )
}

#[derive(Deserialize)]
struct RequestBody<'a> {
    method: Option<String>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ResponseBody<'a> {
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
    message: Option<serde_json::Value>,
}

/// The body of a request packet.
#[derive(Serialize)]
struct RequestOut<'a> {
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
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

/// The JSON text of a packet body.
fn body_json(body: &impl Serialize) -> Vec<u8> {
    // Strings and raw JSON always serialize.
    serde_json::to_vec(body).unwrap_or_default()
}

/// The JSON body of a request for `method` with `payload` (as the PyPI client writes it: a
/// missing payload is left out).
pub fn request_body(method: &str, payload: Option<&RawValue>) -> Vec<u8> {
    let payload = payload.filter(|p| p.get() != "null");
    body_json(&RequestOut { method, payload })
}

/// What a ProcBridge server answered.
#[derive(Debug, Clone)]
pub enum Response {
    /// A good response with its payload as JSON (`null` when there was none).
    Good(Box<RawValue>),
    /// An error response with its message.
    Bad(String),
}

/// Reads a server's response packet.
pub fn parse_response(packet: &Packet) -> Result<Response, String> {
    let body: ResponseBody<'_> = serde_json::from_slice(&packet.body)
        .map_err(|e| format!("the response body is not a JSON object: {e}"))?;
    match packet.status {
        s if s == Status::GoodResponse as u8 => Ok(Response::Good(
            body.payload
                .map(RawValue::to_owned)
                .unwrap_or_else(|| RawValue::NULL.to_owned()),
        )),
        s if s == Status::BadResponse as u8 => Ok(Response::Bad(match body.message {
            Some(serde_json::Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => "unknown server error".to_owned(),
        })),
        other => Err(format!("invalid status code {other} in a response")),
    }
}

/// The broker side of a ProcBridge connection: each request becomes a `call`, and answers are
/// written in the order the requests came.
#[derive(Debug)]
pub struct ProcBridgeCodec {
    max_frame: u32,
    next_id: u64,
    /// Open requests in arrival order, with their answer packet once it is known.
    queue: VecDeque<(u64, Option<BytesMut>)>,
}

impl ProcBridgeCodec {
    /// A codec refusing packets over `max_frame` bytes.
    pub fn new(max_frame: u32) -> ProcBridgeCodec {
        ProcBridgeCodec {
            max_frame,
            next_id: 0,
            queue: VecDeque::new(),
        }
    }

    fn request(&mut self, packet: &Packet) -> Decoded {
        self.next_id += 1;
        let id = self.next_id;
        self.queue.push_back((id, None));
        let refuse = |code, message: String| Decoded::Answer(Frame::error(id, code, &message, b""));
        if packet.status != Status::Request as u8 {
            return refuse(
                ErrorCode::BadFrame,
                format!(
                    "expected a request (status 0), got status {}",
                    packet.status
                ),
            );
        }
        let body: RequestBody<'_> = match serde_json::from_slice(&packet.body) {
            Ok(b) => b,
            Err(e) => {
                return refuse(
                    ErrorCode::BadFrame,
                    format!("the request body is not a JSON object: {e}"),
                );
            }
        };
        let Some(method) = body.method else {
            return refuse(
                ErrorCode::InvalidParams,
                "the request has no method; use \"object.method\"".to_owned(),
            );
        };
        let Some((object, name)) = split_method(&method) else {
            return refuse(
                ErrorCode::InvalidParams,
                format!(
                    "method {method:?} does not name an object; use \"object.method\" (split at the last dot)"
                ),
            );
        };
        let params = body.payload.map(|p| p.get().as_bytes()).unwrap_or_default();
        Decoded::Route(Frame::call(id, object, name, 0, params))
    }

    fn answer(&mut self, id: u64, packet: BytesMut, dst: &mut BytesMut) {
        if let Some(slot) = self.queue.iter_mut().find(|(open, _)| *open == id) {
            slot.1 = Some(packet);
        }
        while let Some((_, Some(_))) = self.queue.front() {
            if let Some((_, Some(ready))) = self.queue.pop_front() {
                dst.extend_from_slice(&ready);
            }
        }
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
            let decoded = self.request(&packet);
            out.push(decoded);
        }
        Ok(())
    }

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut, _bounce: &mut Vec<Frame>) {
        let open = self.queue.iter().any(|(id, _)| *id == frame.id());
        match frame.kind() {
            Kind::Reply if open => self.answer(frame.id(), good_packet(frame), dst),
            Kind::Error if open => {
                self.answer(frame.id(), bad_packet(&frame_error_text(frame)), dst);
            }
            Kind::Error => dst.extend_from_slice(&bad_packet(&frame_error_text(frame))),
            _ => {}
        }
    }

    fn outstanding(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests;
