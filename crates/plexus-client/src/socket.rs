//! The socket's two halves, Unix or TCP: reading whole frames, and writing without waiting when
//! the socket can take the bytes at once.

use std::io;

use bytes::BytesMut;
use plexus_proto::{Frame, decode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{tcp, unix};

/// Free space below which the read buffer grows before the next read.
const READ_SPARE: usize = 4096;
/// How much the read buffer grows at a time.
const READ_CHUNK: usize = 64 * 1024;

/// The read half of the socket and the bytes read but not yet decoded.
pub(crate) struct FrameReader {
    half: ReadHalf,
    buf: BytesMut,
    /// The largest frame accepted from the broker.
    limit: u32,
}

/// The read half of a Unix or TCP socket.
pub(crate) enum ReadHalf {
    Unix(unix::OwnedReadHalf),
    Tcp(tcp::OwnedReadHalf),
}

/// The write half of a Unix or TCP socket.
pub(crate) enum Writer {
    Unix(unix::OwnedWriteHalf),
    Tcp(tcp::OwnedWriteHalf),
}

impl FrameReader {
    /// Reads frames of at most `limit` bytes from `half`.
    pub(crate) fn new(half: ReadHalf, limit: u32) -> FrameReader {
        FrameReader {
            half,
            buf: BytesMut::with_capacity(READ_CHUNK),
            limit,
        }
    }

    /// Takes frames of at most `limit` bytes from now on.
    pub(crate) fn set_limit(&mut self, limit: u32) {
        self.limit = limit;
    }

    /// Reads more bytes; the error says why the connection ended.
    pub(crate) async fn fill(&mut self) -> Result<(), String> {
        if self.buf.capacity() - self.buf.len() < READ_SPARE {
            self.buf.reserve(READ_CHUNK);
        }
        let read = match &mut self.half {
            ReadHalf::Unix(half) => half.read_buf(&mut self.buf).await,
            ReadHalf::Tcp(half) => half.read_buf(&mut self.buf).await,
        };
        match read {
            Ok(0) => Err("the broker closed the connection".to_owned()),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The next whole frame in the bytes read so far, if there is one.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>, String> {
        decode(&mut self.buf, self.limit).map_err(|e| format!("the broker sent a bad frame: {e}"))
    }

    /// Waits for the next whole frame.
    pub(crate) async fn read_frame(&mut self) -> Result<Frame, String> {
        loop {
            if let Some(frame) = self.next_frame()? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }
}

impl Writer {
    /// Writes what the socket takes now, without waiting; `WouldBlock` if it takes nothing.
    pub(crate) fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Writer::Unix(half) => half.try_write(bytes),
            Writer::Tcp(half) => half.try_write(bytes),
        }
    }

    /// Resolves when the socket may take more bytes.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        match self {
            Writer::Unix(half) => half.writable().await,
            Writer::Tcp(half) => half.writable().await,
        }
    }

    /// Writes all of `bytes`, waiting as long as it takes.
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Writer::Unix(half) => half.write_all(bytes).await,
            Writer::Tcp(half) => half.write_all(bytes).await,
        }
    }
}
