//! ipc-server (crates.io `ipc-server` 0.1, its `ipc_client` library): bare JSON objects over TCP
//! with no delimiter. Its clients take whatever one read returns as one message, so the broker
//! writes one message per write and paces them ([`MESSAGE_GAP`]); what the broker reads is split
//! into objects by tracking brace depth and strings. The mapping is in `docs/protocol.md`.

use std::time::Duration;

use bytes::BytesMut;

use super::Fatal;
use crate::error_code::ErrorCode;

mod codec;
mod messages;

pub use codec::IpcServerCodec;

/// The address ipc-server's programs connect to unless `ENV_SERVER_ADDRESS` says otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:1986";

/// The size of the reads of ipc-server's clients: a read that fills it is followed by another,
/// and one that does not ends the message.
pub const CHUNK_SIZE: usize = 4096;

/// How long after a message is written the next may follow when the peer has sent nothing since.
/// Its clients read one message per read; a gap keeps two messages from arriving in one read.
pub const MESSAGE_GAP: Duration = Duration::from_millis(10);

/// Where the splitter is inside the JSON object at the front of the buffer.
#[derive(Debug, Default, Clone)]
pub struct Splitter {
    /// Bytes at the front of the buffer already scanned.
    scanned: usize,
    /// Open braces and brackets not yet closed.
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl Splitter {
    /// Takes the next whole JSON object off the front of `buf` (whitespace before it is skipped);
    /// `Ok(None)` when more bytes are needed. An object over `max_frame` bytes, or a byte other
    /// than whitespace or `{` between objects, cannot be followed past.
    pub fn take(&mut self, buf: &mut BytesMut, max_frame: u32) -> Result<Option<BytesMut>, Fatal> {
        if self.scanned == 0 {
            let skip = buf
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(buf.len());
            let _ = buf.split_to(skip);
            match buf.first() {
                None => return Ok(None),
                Some(b'{') => {}
                Some(&other) => {
                    return Err(Fatal::new(
                        ErrorCode::BadFrame,
                        format!("expected a JSON object, got the byte 0x{other:02x}"),
                    ));
                }
            }
        }
        for i in self.scanned..buf.len() {
            if i >= max_frame as usize {
                return Err(Fatal::new(
                    ErrorCode::FrameTooLarge,
                    format!("a message of more than {max_frame} bytes (the frame limit)"),
                ));
            }
            let b = buf[i];
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        *self = Splitter::default();
                        return Ok(Some(buf.split_to(i + 1)));
                    }
                }
                _ => {}
            }
        }
        self.scanned = buf.len();
        Ok(None)
    }
}

/// `message` as it goes on the wire: when its length is a multiple of [`CHUNK_SIZE`], a space is
/// added, or the client's last read would fill its buffer and it would wait for more.
pub fn wire_message(mut message: Vec<u8>) -> Vec<u8> {
    if message.len().is_multiple_of(CHUNK_SIZE) {
        message.push(b' ');
    }
    message
}

#[cfg(test)]
mod tests;
