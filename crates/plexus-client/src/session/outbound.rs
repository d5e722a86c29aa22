//! Frames queued for the socket, who waits to learn they were written, and the publish-queue
//! room their publishes hold until then.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd};

use bytes::{Buf, BytesMut};
use plexus_proto::{FdPayload, Frame, encode};

use crate::Error;
use crate::command::Written;
use crate::publish_queue::PublishQueue;

/// Encoded frames waiting for the socket, in order.
#[derive(Default)]
pub(crate) struct Outbound {
    bytes: BytesMut,
    /// Flushes waiting for everything before them to be written.
    written: Vec<Written>,
    /// Room the publishes among `bytes` hold in the [`PublishQueue`].
    published: usize,
    /// Memfd payloads: whether large payloads go as memfds (the broker agreed).
    pub(crate) use_fds: bool,
    /// Memfd payloads: the memfds to send, each with the offset in `bytes` of its frame.
    fds: VecDeque<(usize, FdPayload)>,
}

impl Outbound {
    /// Queues `frame`.
    pub(crate) fn push(&mut self, frame: &Frame) {
        let Some(frame) = crate::memfd::for_wire(frame, self.use_fds) else {
            return;
        };
        if let Some(fd) = frame.fd_payload() {
            self.fds.push_back((self.bytes.len(), fd.clone()));
        }
        encode(&frame, &mut self.bytes);
    }

    /// The bytes to write next, and the memfd to send with them: up to the next frame with a
    /// memfd, which goes with the first bytes of its frame.
    pub(crate) fn next_write(&self) -> (&[u8], Option<BorrowedFd<'_>>) {
        let mut fds = self.fds.iter();
        match fds.next() {
            None => (&self.bytes, None),
            Some((0, fd)) => {
                let end = fds.next().map_or(self.bytes.len(), |(at, _)| *at);
                (&self.bytes[..end], Some(fd.as_fd()))
            }
            Some((at, _)) => (&self.bytes[..*at], None),
        }
    }

    /// Queues a publish holding `reserved` bytes of the publish queue until it is written.
    pub(crate) fn push_published(&mut self, frame: &Frame, reserved: u32) {
        self.push(frame);
        self.published += reserved as usize;
    }

    /// `written` learns when everything queued so far is handed to the socket.
    pub(crate) fn wait_written(&mut self, written: Written) {
        self.written.push(written);
    }

    /// Bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether no bytes are queued (flushes may still wait to be told so).
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether nothing is queued and no flush waits to be told so.
    pub(crate) fn is_idle(&self) -> bool {
        self.bytes.is_empty() && self.written.is_empty()
    }

    /// The bytes still to write.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Drops the first `n` bytes, which the socket took; once all are gone, tells the waiters
    /// and gives the publishes' room back to `queue`.
    pub(crate) fn advance(&mut self, n: usize, queue: &PublishQueue) {
        if n > 0 && self.fds.front().is_some_and(|(at, _)| *at == 0) {
            self.fds.pop_front();
        }
        for (at, _) in &mut self.fds {
            *at = at.saturating_sub(n);
        }
        self.bytes.advance(n.min(self.bytes.len()));
        if self.bytes.is_empty() {
            for written in self.written.drain(..) {
                let _ = written.send(Ok(()));
            }
            queue.release(std::mem::take(&mut self.published));
        }
    }

    /// Drops everything queued and tells the waiters the connection was lost; publishes dropped
    /// give their room back and leave the loss in `queue` for the next publish or flush.
    pub(crate) fn fail(&mut self, why: &str, queue: &PublishQueue) {
        self.bytes.clear();
        self.fds.clear();
        for written in self.written.drain(..) {
            let _ = written.send(Err(Error::ConnectionLost(why.to_owned())));
        }
        if self.published > 0 {
            queue.release(std::mem::take(&mut self.published));
            queue.lose(Error::ConnectionLost(why.to_owned()));
        }
    }
}
