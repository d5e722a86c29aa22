//! Frames queued for the socket, and who waits to learn they were written.

use bytes::{Buf, BytesMut};
use plexus_proto::{Frame, encode};

use crate::Error;
use crate::command::Written;

/// Encoded frames waiting for the socket, in order.
#[derive(Default)]
pub(crate) struct Outbound {
    bytes: BytesMut,
    written: Vec<Written>,
}

impl Outbound {
    /// Queues `frame`.
    pub(crate) fn push(&mut self, frame: &Frame) {
        encode(frame, &mut self.bytes);
    }

    /// Queues `frame`; `written` learns when it is handed to the socket.
    pub(crate) fn push_waited(&mut self, frame: &Frame, written: Option<Written>) {
        self.push(frame);
        self.written.extend(written);
    }

    /// Bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bytes still to write.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Drops the first `n` bytes, which the socket took; once all are gone, tells the waiters.
    pub(crate) fn advance(&mut self, n: usize) {
        self.bytes.advance(n.min(self.bytes.len()));
        if self.bytes.is_empty() {
            for written in self.written.drain(..) {
                let _ = written.send(Ok(()));
            }
        }
    }

    /// Drops everything queued and tells the waiters the connection was lost.
    pub(crate) fn fail(&mut self, why: &str) {
        self.bytes.clear();
        for written in self.written.drain(..) {
            let _ = written.send(Err(Error::ConnectionLost(why.to_owned())));
        }
    }
}
