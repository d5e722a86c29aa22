//! The read half of a connection: its buffer, telling the dialect from the first bytes, decoding
//! native frames, and the deadlines on what the peer has begun to send.
//!
//! Until its first complete message (a native `hello`, or any dialect message) a connection must
//! finish it by the handshake deadline, and native frames are limited to [`HELLO_MAX_FRAME`].
//! After that, a message that has begun to arrive must be complete within the partial-frame
//! timeout; a connection with nothing pending may stay idle for ever.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::BytesMut;
use plexus_proto::dialect::Dialect;
use plexus_proto::{DecodeError, ErrorCode, Frame, HEADER_LEN, Header, decode_compact};
use tokio::time::Instant;
use tracing::debug;

use super::fds::{ReadFds, Received};
use super::stop::Stop;

/// Bytes the reader asks the socket for at most, per read, unless a large frame's body is due.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes the reader asks for at first: a connection that sends small frames keeps a small
/// buffer. Each read that fills what it asked for doubles the next ask, up to [`READ_CHUNK`].
const FIRST_READ: usize = 4 * 1024;
/// Frames smaller than this are copied out of the read buffer when decoded, so that a frame
/// queued for long (for a peer that reads slowly) holds only its own bytes, not the whole buffer
/// it was read into. Larger frames fill most of their buffer and stay slices of it.
const COPY_BELOW: usize = READ_CHUNK / 2;
/// A buffer that grew past this for a large message is given back once it is empty, so an idle connection does not keep its peak size.
const SHRINK_ABOVE: usize = 2 * READ_CHUNK;
/// The largest native frame taken before `hello`: nothing reserves more for a peer that has not
/// introduced itself.
pub const HELLO_MAX_FRAME: u32 = 64 * 1024;

/// The read half of a socket with its buffer.
pub struct Input<R> {
    reader: R,
    /// Bytes read and not yet decoded.
    pub buf: BytesMut,
    /// The largest native frame taken now.
    max_frame: u32,
    /// The largest native frame taken after the handshake.
    full_max_frame: u32,
    /// Whether the first complete message has yet to come.
    handshake: bool,
    /// When the handshake must be over.
    handshake_due: Instant,
    handshake_timeout: Duration,
    partial_timeout: Duration,
    /// When the message that has begun to arrive must be complete (after the handshake).
    partial_due: Option<Instant>,
    /// What the peer sends: "frame" or "message", for what it is told.
    unit: &'static str,
    /// Whether the buffer grew past [`SHRINK_ABOVE`] since it was last replaced.
    grown: bool,
    /// Memfd payloads: descriptors received and not yet given to their frames.
    pub fds: Received,
    /// Bytes the next read asks for at least (performance: grows from [`FIRST_READ`]).
    read_size: usize,
}

impl<R: ReadFds> Input<R> {
    /// Wraps the read half of a connection accepted now, whose frames may be up to `max_frame`
    /// bytes after the handshake.
    pub fn new(
        reader: R,
        max_frame: u32,
        handshake_timeout: Duration,
        partial_timeout: Duration,
    ) -> Input<R> {
        Input {
            reader,
            buf: BytesMut::new(),
            max_frame: max_frame.min(HELLO_MAX_FRAME),
            full_max_frame: max_frame,
            handshake: true,
            handshake_due: Instant::now() + handshake_timeout,
            handshake_timeout,
            partial_timeout,
            partial_due: None,
            unit: "frame",
            grown: false,
            fds: Received::default(),
            read_size: FIRST_READ,
        }
    }

    /// Marks the connection as speaking a dialect, whose messages are not frames.
    pub fn speaks_dialect(&mut self) {
        self.unit = "message";
    }

    /// Reads once from the socket into the buffer: `Ok(false)` at the end of the stream. Stops
    /// the connection when the read fails, or when the handshake or a partial message is overdue.
    /// Cancel safe: bytes are only ever added to the buffer by a completed read.
    pub async fn read_some(&mut self) -> Result<bool, Stop> {
        // A large frame's buffer was reserved to its exact size when its header came (by the
        // decoder): asking for more room than the frame still needs would double that buffer,
        // and the frame, queued, would hold twice its size (outboxes count its size).
        let ask = match self.frame_still_needs() {
            Some(needs) if needs > 0 => needs.min(self.read_size),
            _ => self.read_size,
        };
        self.buf.reserve(ask);
        let room = self.buf.capacity() - self.buf.len();
        let due = if self.handshake {
            Some(self.handshake_due)
        } else {
            self.partial_due
        };
        let read = self.reader.read_fds(&mut self.buf, &mut self.fds);
        let result = match due {
            None => read.await,
            Some(due) => match tokio::time::timeout_at(due, read).await {
                Ok(result) => result,
                Err(_) => return Err(self.overdue()),
            },
        };
        self.grown |= self.buf.capacity() > SHRINK_ABOVE;
        match result {
            Ok(0) => Ok(false),
            Ok(n) => {
                if n == room && self.read_size < READ_CHUNK {
                    self.read_size *= 2;
                }
                Ok(true)
            }
            // Memfd payloads: a descriptor the connection may not send.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err(Stop::Refused(ErrorCode::BadFrame, e.to_string()))
            }
            Err(e) => {
                debug!(error = %e, "read failed");
                Err(Stop::Closed)
            }
        }
    }

    /// The bytes the native frame that has begun to arrive still needs, when the buffer starts
    /// with a valid frame header.
    fn frame_still_needs(&self) -> Option<usize> {
        let head: &[u8; HEADER_LEN] = self.buf.get(..HEADER_LEN)?.try_into().ok()?;
        let header = Header::decode(head).ok()?;
        (HEADER_LEN + header.body_len as usize).checked_sub(self.buf.len())
    }

    /// Why the connection is closed when its deadline passes.
    fn overdue(&self) -> Stop {
        let message = if self.handshake {
            let first = match self.unit {
                "frame" => "hello frame",
                _ => "complete message",
            };
            format!(
                "no {first} within the handshake timeout ({} ms)",
                self.handshake_timeout.as_millis()
            )
        } else {
            format!(
                "a {} was begun and not completed within partial_frame_timeout ({} ms)",
                self.unit,
                self.partial_timeout.as_millis()
            )
        };
        Stop::Refused(ErrorCode::BadFrame, message)
    }

    /// Tells the input what the last decoding did: whether it `completed` a message. Ends the
    /// handshake at the first one; afterwards starts the partial-message deadline when a new
    /// message has begun, and clears it when nothing is pending (then a buffer grown for a large
    /// message is replaced by a small one).
    pub fn decoded(&mut self, completed: bool) {
        if completed {
            self.handshake = false;
            self.max_frame = self.full_max_frame;
        }
        if self.handshake {
            return;
        }
        if self.buf.is_empty() {
            self.partial_due = None;
            if std::mem::take(&mut self.grown) {
                self.buf = BytesMut::new();
            }
        } else if completed || self.partial_due.is_none() {
            self.partial_due = Some(Instant::now() + self.partial_timeout);
        }
    }

    /// The connection was not read from for a while (its outbox was over its limit): a message
    /// that had begun gets its whole partial-frame timeout again, as the wait was not the peer's
    /// sending.
    pub fn resume(&mut self) {
        if self.partial_due.is_some() {
            self.partial_due = Some(Instant::now() + self.partial_timeout);
        }
    }

    /// Reads once; the end of the stream stops the connection.
    pub async fn fill(&mut self) -> Result<(), Stop> {
        match self.read_some().await? {
            true => Ok(()),
            false if self.buf.is_empty() => Err(Stop::Closed),
            false => Err(Stop::Refused(
                ErrorCode::BadFrame,
                format!("connection closed in the middle of a {}", self.unit),
            )),
        }
    }

    /// Reads until the first bytes tell the dialect.
    pub async fn detect(&mut self) -> Result<Dialect, Stop> {
        loop {
            if let Some(dialect) = Dialect::detect(&self.buf) {
                return Ok(dialect);
            }
            self.fill().await?;
        }
    }

    /// Moves every complete native frame in the buffer to `out`.
    pub fn drain_into(&mut self, out: &mut VecDeque<Frame>) -> Result<(), Stop> {
        let before = out.len();
        let result = loop {
            match self.decode_one() {
                Ok(Some(frame)) => out.push_back(frame),
                Ok(None) => break Ok(()),
                Err(stop) => break Err(stop),
            }
        };
        self.decoded(out.len() > before);
        result?;
        self.fds.check_left(!self.buf.is_empty())
    }

    /// The next native frame, reading as needed.
    pub async fn next(&mut self) -> Result<Frame, Stop> {
        loop {
            if let Some(frame) = self.decode_one()? {
                self.decoded(true);
                self.fds.check_left(!self.buf.is_empty())?;
                return Ok(frame);
            }
            self.decoded(false);
            self.fill().await?;
        }
    }

    fn decode_one(&mut self) -> Result<Option<Frame>, Stop> {
        let frame = decode_compact(&mut self.buf, self.max_frame, COPY_BELOW)
            .map_err(|e| self.refusal(e))?;
        // Memfd payloads: a frame flagged for one takes its descriptor.
        frame
            .map(|frame| self.fds.attach(frame, self.max_frame))
            .transpose()
    }

    fn refusal(&self, e: DecodeError) -> Stop {
        let mut message = e.to_string();
        if self.handshake && matches!(e, DecodeError::TooLarge { .. }) {
            message.push_str(" (the limit before hello)");
        }
        Stop::Refused(e.code(), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(bytes: &[u8]) -> Input<&[u8]> {
        let second = Duration::from_secs(1);
        Input::new(bytes, 16 * 1024 * 1024, second, second)
    }

    #[tokio::test]
    async fn an_idle_buffer_shrinks_back_after_a_large_frame() {
        let hello = Frame::hello("big").to_bytes();
        let big = Frame::publish(1, "t", &vec![7u8; 1024 * 1024], false).to_bytes();
        let wire = [&hello[..], &big[..]].concat();
        let mut input = input(&wire);
        assert_eq!(
            input.next().await.ok().map(|f| f.kind()),
            Some(plexus_proto::Kind::Hello)
        );
        let mut frames = VecDeque::new();
        while frames.is_empty() {
            assert!(input.fill().await.is_ok(), "bytes to read");
            assert!(input.drain_into(&mut frames).is_ok(), "valid frames");
        }
        assert_eq!(frames.len(), 1);
        drop(frames);
        assert!(input.buf.is_empty());
        // What the next read does: a buffer still on the large allocation would take it back.
        input.buf.reserve(READ_CHUNK);
        assert!(
            input.buf.capacity() <= SHRINK_ABOVE,
            "the buffer holds {} bytes",
            input.buf.capacity()
        );
    }

    #[tokio::test]
    async fn before_hello_a_frame_over_64_kib_is_refused_from_its_header() {
        let big = Frame::publish(1, "t", &vec![7u8; 100 * 1024], false).to_bytes();
        let mut input = input(&big[..plexus_proto::HEADER_LEN]);
        match input.next().await {
            Err(Stop::Refused(code, message)) => {
                assert_eq!(code, ErrorCode::FrameTooLarge);
                assert!(
                    message.contains("65536") && message.contains("before hello"),
                    "{message}"
                );
            }
            Err(Stop::Closed) => panic!("closed without refusing"),
            Ok(frame) => panic!("took {frame:?}"),
        }
        assert!(
            input.buf.capacity() <= 2 * READ_CHUNK,
            "nothing reserved the body"
        );
    }
}
