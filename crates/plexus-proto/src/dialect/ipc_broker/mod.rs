//! ipc-broker (crates.io `ipc-broker` 1.1): packets of a u32 big-endian length and serde's
//! externally tagged JSON of its `RpcRequest` / `RpcResponse` enums. Requests become frames;
//! answers go back as the variants its `IPCClient` and `WorkerBuilder` expect.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::Fatal;
use crate::error_code::ErrorCode;

mod codec;
mod messages;
mod requests;

pub use codec::IpcBrokerCodec;

/// Largest packet body ipc-broker's `read_packet` accepts (its `BUF_SIZE`).
pub const MAX_PACKET: usize = u16::MAX as usize + 1;

/// Takes one packet body off the front of `buf`; `Ok(None)` when more bytes are needed.
pub fn take_packet(buf: &mut BytesMut, max_frame: u32) -> Result<Option<Bytes>, Fatal> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let size = 4 + u64::from(len);
    if size > u64::from(max_frame) {
        return Err(Fatal::new(
            ErrorCode::FrameTooLarge,
            format!("packet of {size} bytes exceeds the limit of {max_frame} bytes"),
        ));
    }
    let total = 4 + len as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len as usize).freeze()))
}

/// Appends one packet holding `body` to `dst`.
pub fn put_packet(dst: &mut BytesMut, body: &[u8]) {
    dst.reserve(4 + body.len());
    // Bodies written here are at most MAX_PACKET bytes.
    dst.put_u32(body.len() as u32);
    dst.put_slice(body);
}

#[cfg(test)]
mod tests;
