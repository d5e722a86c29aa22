//! ipcprims (crates.io `ipcprims` 0.2): frames of `IP`, a u32 little-endian payload length, a u16
//! little-endian channel, then the payload. The handshake and control messages are JSON on
//! CONTROL; plexus carries JSON-RPC 2.0 on COMMAND and events on DATA or TELEMETRY. The mapping
//! is in `docs/protocol.md`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Fatal;
use crate::error_code::ErrorCode;

mod codec;
mod rpc;

pub use codec::IpcPrimsCodec;
pub use rpc::{RpcAnswer, parse_answer, request};

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"IP";
/// Magic, length and channel.
pub const HEADER_LEN: usize = 8;

/// Handshake, ping/pong and shutdown.
pub const CONTROL: u16 = 0;
/// Requests and their responses (JSON-RPC 2.0 here).
pub const COMMAND: u16 = 1;
/// Bulk data: publishes and events.
pub const DATA: u16 = 2;
/// Metrics, logs, health: publishes and events too.
pub const TELEMETRY: u16 = 3;
/// Errors not tied to a request.
pub const ERROR: u16 = 4;

/// The protocol name of the handshake.
pub const PROTOCOL: &str = "ipcprims";
/// The protocol version plexus speaks.
pub const VERSION: &str = "1.0";

/// Takes one frame off the front of `buf`: its channel and payload; `Ok(None)` when more bytes
/// are needed. A frame over `max_frame` bytes (header included) or without the magic ends the
/// stream.
pub fn take_frame(buf: &mut BytesMut, max_frame: u32) -> Result<Option<(u16, Bytes)>, Fatal> {
    if buf.len() < HEADER_LEN {
        if !MAGIC.starts_with(&buf[..buf.len().min(2)]) {
            return Err(not_a_frame());
        }
        return Ok(None);
    }
    if buf[..2] != MAGIC {
        return Err(not_a_frame());
    }
    let len = u32::from_le_bytes([buf[2], buf[3], buf[4], buf[5]]);
    let channel = u16::from_le_bytes([buf[6], buf[7]]);
    let size = HEADER_LEN as u64 + u64::from(len);
    if size > u64::from(max_frame) {
        return Err(Fatal::new(
            ErrorCode::FrameTooLarge,
            format!("frame of {size} bytes exceeds the limit of {max_frame} bytes"),
        ));
    }
    let total = HEADER_LEN + len as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    Ok(Some((channel, buf.split_to(len as usize).freeze())))
}

fn not_a_frame() -> Fatal {
    Fatal::new(
        ErrorCode::BadFrame,
        "not an ipcprims frame (no \"IP\" magic)",
    )
}

/// Appends one frame carrying `payload` on `channel` to `dst`.
pub fn put_frame(dst: &mut BytesMut, channel: u16, payload: &[u8]) {
    dst.reserve(HEADER_LEN + payload.len());
    dst.put_slice(&MAGIC);
    // Payloads written here are JSON built from frames under the broker's frame limit.
    dst.put_u32_le(payload.len() as u32);
    dst.put_u16_le(channel);
    dst.put_slice(payload);
}

/// The client's handshake on CONTROL.
#[derive(Debug, Serialize, Deserialize)]
pub struct HandshakeRequest {
    /// Always `ipcprims`.
    pub protocol: String,
    /// `MAJOR.MINOR`; plexus speaks 1.0 and accepts 1.x.
    pub version: String,
    /// The channels the client wants (never CONTROL).
    pub channels: Vec<u16>,
    /// A credential; accepted and not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
}

/// The server's answer to the handshake.
#[derive(Debug, Serialize, Deserialize)]
pub struct HandshakeResponse {
    /// Always `ipcprims`.
    pub protocol: String,
    /// The version the server speaks.
    pub version: String,
    /// The channels both sides have, in the order the client asked for them.
    pub channels: Vec<u16>,
    /// The server's name for the client.
    pub peer_id: String,
}

/// A message on CONTROL after the handshake: `ping`, `pong`, `shutdown_request`, `shutdown_ack`,
/// `shutdown_force`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ControlMessage<'a> {
    /// What it is.
    #[serde(rename = "type")]
    pub kind: std::borrow::Cow<'a, str>,
    /// Details (a shutdown's reason).
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub payload: Option<&'a RawValue>,
}

impl ControlMessage<'_> {
    /// The JSON of a control message of type `kind` without a payload.
    pub fn json(kind: &str) -> Vec<u8> {
        let msg = ControlMessage {
            kind: kind.into(),
            payload: None,
        };
        // A string always serializes.
        serde_json::to_vec(&msg).unwrap_or_default()
    }
}

/// The channels of `requested` that plexus serves (COMMAND, DATA, TELEMETRY, ERROR), each once, in
/// the client's order; `Err` for a request ipcprims itself refuses (CONTROL, over 256 channels).
pub fn negotiate(requested: &[u16]) -> Result<Vec<u16>, String> {
    if requested.len() > 256 {
        return Err(format!(
            "{} channels asked for; at most 256",
            requested.len()
        ));
    }
    if requested.contains(&CONTROL) {
        return Err("CONTROL must not be among the negotiated channels".to_owned());
    }
    let mut out: Vec<u16> = Vec::new();
    for &c in requested {
        if (COMMAND..=ERROR).contains(&c) && !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// Whether a client speaking `version` can talk to plexus (same major, 1).
pub fn version_compatible(version: &str) -> bool {
    match version.split_once('.') {
        Some((major, minor)) => major == "1" && minor.parse::<u16>().is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests;
