//! ProcBridge: packets of `pb`, a 2-byte version, a status byte, 2 reserved bytes, a u32
//! little-endian body length and a JSON body. Requests are calls to `object.method`; answers go
//! back in request order, since the protocol has no request ids.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Fatal;
use crate::error_code::ErrorCode;

mod codec;
mod turns;

pub use codec::ProcBridgeCodec;

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

#[cfg(test)]
mod tests;
