//! The read half of a connection: its buffer, telling the dialect from the first bytes, and
//! decoding native frames.

use std::collections::VecDeque;

use bytes::BytesMut;
use plexus_proto::dialect::Dialect;
use plexus_proto::{DecodeError, ErrorCode, Frame, decode_compact};
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::debug;

use super::stop::Stop;

/// Bytes the reader asks the socket for at least, per read.
const READ_CHUNK: usize = 64 * 1024;
/// Frames smaller than this are copied out of the read buffer when decoded, so that a frame
/// queued for long (for a peer that reads slowly) holds only its own bytes, not the whole buffer
/// it was read into. Larger frames fill most of their buffer and stay slices of it.
const COPY_BELOW: usize = READ_CHUNK / 2;

/// The read half of a socket with its buffer.
pub struct Input<R> {
    reader: R,
    /// Bytes read and not yet decoded.
    pub buf: BytesMut,
    max_frame: u32,
}

impl<R: AsyncRead + Unpin> Input<R> {
    /// Wraps the read half of a connection whose frames may be up to `max_frame` bytes.
    pub fn new(reader: R, max_frame: u32) -> Input<R> {
        Input {
            reader,
            buf: BytesMut::with_capacity(READ_CHUNK),
            max_frame,
        }
    }

    /// Reads once from the socket into the buffer: `Ok(false)` at the end of the stream.
    /// Cancel safe: bytes are only ever added to the buffer by a completed read.
    pub async fn read_some(&mut self) -> Result<bool, ()> {
        self.buf.reserve(READ_CHUNK);
        match self.reader.read_buf(&mut self.buf).await {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => {
                debug!(error = %e, "read failed");
                Err(())
            }
        }
    }

    /// Reads once; the end of the stream stops the connection.
    pub async fn fill(&mut self) -> Result<(), Stop> {
        match self.read_some().await {
            Ok(true) => Ok(()),
            Ok(false) if self.buf.is_empty() => Err(Stop::Closed),
            Ok(false) => Err(Stop::Refused(
                ErrorCode::BadFrame,
                "connection closed in the middle of a frame".into(),
            )),
            Err(()) => Err(Stop::Closed),
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
        while let Some(frame) =
            decode_compact(&mut self.buf, self.max_frame, COPY_BELOW).map_err(refusal)?
        {
            out.push_back(frame);
        }
        Ok(())
    }

    /// The next native frame, reading as needed.
    pub async fn next(&mut self) -> Result<Frame, Stop> {
        loop {
            if let Some(frame) =
                decode_compact(&mut self.buf, self.max_frame, COPY_BELOW).map_err(refusal)?
            {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }
}

fn refusal(e: DecodeError) -> Stop {
    Stop::Refused(e.code(), e.to_string())
}
