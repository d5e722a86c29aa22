//! Frames queued for the socket, and who waits to learn they were written.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd};

use bytes::{Buf, BytesMut};
use plexus_proto::{FdPayload, Frame, encode};

use crate::Error;
use crate::command::Written;

/// Encoded frames waiting for the socket, in order.
#[derive(Default)]
pub(crate) struct Outbound {
    bytes: BytesMut,
    written: Vec<Written>,
    /// Memfd payloads: whether large payloads go as memfds (the broker agreed).
    pub(crate) use_fds: bool,
    /// Memfd payloads: the memfds to send, each with the offset in `bytes` of its frame.
    fds: VecDeque<(usize, FdPayload)>,
}

impl Outbound {
    /// Queues `frame`.
    pub(crate) fn push(&mut self, frame: &Frame) {
        let sealed = self.use_fds.then(|| crate::memfd::seal(frame)).flatten();
        let frame = sealed.as_ref().unwrap_or(frame);
        if let Some(fd) = frame.fd_payload() {
            self.fds.push_back((self.bytes.len(), fd.clone()));
        }
        encode(frame, &mut self.bytes);
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
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Drops the first `n` bytes, which the socket took; once all are gone, tells the waiters.
    pub(crate) fn advance(&mut self, n: usize) {
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
        }
    }

    /// Drops everything queued and tells the waiters the connection was lost.
    pub(crate) fn fail(&mut self, why: &str) {
        self.bytes.clear();
        self.fds.clear();
        for written in self.written.drain(..) {
            let _ = written.send(Err(Error::ConnectionLost(why.to_owned())));
        }
    }
}
