//! [`Payload`]: a call's params or result as it travels, either bytes or a sealed memfd not yet
//! read, so a handler can hand a large payload on (or back) without reading it.

use std::io;

use bytes::Bytes;
use plexus_proto::{FdPayload, Frame};

/// A call's params or result: JSON bytes, or a sealed memfd holding them that nobody has read
/// yet (payloads of 128 KiB and more between native Unix peers, `docs/protocol.md`).
///
/// A handler served with [`crate::Client::serve_payload`] gets its params as a `Payload` and
/// answers with one. Answering with the params' own `Payload` hands the caller's memfd back
/// unread: the bytes are neither copied nor read by the worker. Cloning is cheap (the bytes or
/// the descriptor are shared).
#[derive(Clone, Debug)]
pub struct Payload(Held);

#[derive(Clone, Debug)]
enum Held {
    Bytes(Bytes),
    Memfd(FdPayload),
}

impl Payload {
    /// The payload's length in bytes (a memfd's size, without reading it).
    pub fn len(&self) -> u64 {
        match &self.0 {
            Held::Bytes(bytes) => bytes.len() as u64,
            Held::Memfd(fd) => fd.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the payload is a memfd not yet read.
    pub fn is_memfd(&self) -> bool {
        matches!(self.0, Held::Memfd(_))
    }

    /// The payload's bytes: the bytes themselves, or a copy of the memfd's read now (`pread`).
    pub fn to_bytes(&self) -> io::Result<Bytes> {
        match &self.0 {
            Held::Bytes(bytes) => Ok(bytes.clone()),
            Held::Memfd(fd) => {
                let mut out = Vec::new();
                crate::memfd::read_all(fd, &mut out)?;
                Ok(Bytes::from(out))
            }
        }
    }

    /// The payload of a `call` or `reply` frame: its memfd if it came with one, else its bytes.
    pub(crate) fn of_frame(frame: &Frame) -> Payload {
        match frame.fd_payload() {
            Some(fd) => Payload(Held::Memfd(fd.clone())),
            None => Payload(Held::Bytes(frame.payload())),
        }
    }

    /// A `reply` frame to call `id` carrying this payload: its memfd if it is one; bytes of
    /// [`crate::memfd::THRESHOLD`] or more written straight into a new memfd where the
    /// connection takes `memfds` (no inline frame built first); else the bytes inline.
    pub(crate) fn reply_frame(&self, id: u64, memfds: bool) -> Frame {
        match &self.0 {
            Held::Memfd(fd) => Frame::reply(id, b"").with_fd_payload(fd.clone()),
            Held::Bytes(bytes) if memfds && bytes.len() >= crate::memfd::THRESHOLD => {
                match crate::memfd::create(bytes) {
                    Ok(fd) => Frame::reply(id, b"").with_fd_payload(fd),
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot make a memfd; the result goes inline");
                        Frame::reply(id, bytes)
                    }
                }
            }
            Held::Bytes(bytes) => Frame::reply(id, bytes),
        }
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Payload {
        Payload(Held::Bytes(bytes))
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Payload {
        Payload(Held::Bytes(Bytes::from(bytes)))
    }
}

impl From<&'static [u8]> for Payload {
    fn from(bytes: &'static [u8]) -> Payload {
        Payload(Held::Bytes(Bytes::from_static(bytes)))
    }
}
