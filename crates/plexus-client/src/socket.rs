//! The socket, Unix or TCP: reading whole frames, and writing without waiting when the socket can
//! take the bytes at once.
//!
//! The socket is registered with the runtime for reading only. A socket registered for writing
//! too wakes its process each time the peer reads what it sent (the kernel reports it writable
//! again), which is a wasted wake-up per message sent; so a write that would block waits on a
//! second descriptor of the same socket, registered for writing only while that lasts.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use bytes::BytesMut;
use plexus_proto::{Frame, decode, wants_fd};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::memfd;

/// Bytes read at a time into the reusable read buffer.
const READ_CHUNK: usize = 64 * 1024;
/// Most bytes read at once straight into a frame that needs more than [`READ_CHUNK`].
const LARGE_READ: usize = 1024 * 1024;

/// A connected, non-blocking Unix or TCP socket.
#[derive(Debug)]
pub(crate) enum Sock {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Sock {
    /// Takes a connected tokio socket out of the runtime, to register it anew.
    pub(crate) fn from_unix(stream: tokio::net::UnixStream) -> io::Result<Sock> {
        stream.into_std().map(Sock::Unix)
    }

    /// As [`Sock::from_unix`], for TCP.
    pub(crate) fn from_tcp(stream: tokio::net::TcpStream) -> io::Result<Sock> {
        stream.into_std().map(Sock::Tcp)
    }

    /// A second descriptor of the same socket.
    fn try_clone(&self) -> io::Result<Sock> {
        match self {
            Sock::Unix(s) => s.try_clone().map(Sock::Unix),
            Sock::Tcp(s) => s.try_clone().map(Sock::Tcp),
        }
    }

    /// Reads; on a Unix socket a descriptor that came with the bytes goes to `fds`.
    fn read(&self, buf: &mut [u8], fds: &mut VecDeque<OwnedFd>) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => memfd::receive(s, buf, fds),
            Sock::Tcp(s) => (&*s).read(buf),
        }
    }

    /// Writes; on a Unix socket `fd` goes with the first byte.
    fn write(&self, buf: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<usize> {
        match (self, fd) {
            (Sock::Unix(s), Some(fd)) => memfd::send(s, buf, fd),
            (Sock::Unix(s), None) => (&*s).write(buf),
            (Sock::Tcp(s), _) => (&*s).write(buf),
        }
    }
}

impl std::os::fd::AsRawFd for Sock {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Sock::Unix(s) => s.as_raw_fd(),
            Sock::Tcp(s) => s.as_raw_fd(),
        }
    }
}

/// Registers `sock` with the runtime for `interest` only.
///
/// tokio deprecates this safe constructor because a type could close or swap its descriptor while
/// registered; [`Sock`] owns its socket and closes it only when dropped, after the registration
/// (the `AsyncFd` drops its registration first), and the safe replacement is an `unsafe fn`,
/// which this workspace forbids.
#[allow(deprecated)]
fn register(sock: Sock, interest: Interest) -> io::Result<AsyncFd<Sock>> {
    AsyncFd::with_interest(sock, interest)
}

/// Splits `sock` into its reading and writing sides, registered for reading only.
pub(crate) fn split(sock: Sock, limit: u32) -> io::Result<(FrameReader, Writer)> {
    let fd = Arc::new(register(sock, Interest::READABLE)?);
    let reader = FrameReader {
        fd: fd.clone(),
        buf: BytesMut::with_capacity(READ_CHUNK),
        scratch: vec![0; READ_CHUNK],
        limit,
        fds: VecDeque::new(),
    };
    Ok((reader, Writer { fd, waiting: None }))
}

/// The reading side of the socket and the bytes read but not yet decoded.
pub(crate) struct FrameReader {
    fd: Arc<AsyncFd<Sock>>,
    buf: BytesMut,
    /// Where small reads land before they are appended to `buf` (initialized once, reused).
    scratch: Vec<u8>,
    /// The largest frame accepted from the broker.
    limit: u32,
    /// Memfd payloads: descriptors received and not yet given to their frames.
    fds: VecDeque<OwnedFd>,
}

/// The writing side of the socket.
pub(crate) struct Writer {
    fd: Arc<AsyncFd<Sock>>,
    /// A second descriptor registered for writing, while a write waits for room.
    waiting: Option<AsyncFd<Sock>>,
}

impl FrameReader {
    /// Takes frames of at most `limit` bytes from now on.
    pub(crate) fn set_limit(&mut self, limit: u32) {
        self.limit = limit;
    }

    /// Reads more bytes; the error says why the connection ended. A read shorter than asked
    /// took everything there was, so the next waits for the socket instead of trying again.
    pub(crate) async fn fill(&mut self) -> Result<(), String> {
        loop {
            let mut ready = self.fd.readable().await.map_err(|e| e.to_string())?;
            // A frame whose body is still to come reserved room for it: read straight there.
            let start = self.buf.len();
            let room = self.buf.capacity() - start;
            let (read, asked) = if room > READ_CHUNK {
                let asked = room.min(LARGE_READ);
                self.buf.resize(start + asked, 0);
                let buf = &mut self.buf[start..];
                let fds = &mut self.fds;
                let read = ready.try_io(|fd| fd.get_ref().read(buf, fds));
                let n = match &read {
                    Ok(Ok(n)) => *n,
                    _ => 0,
                };
                self.buf.truncate(start + n);
                (read, asked)
            } else {
                let scratch = &mut self.scratch;
                let fds = &mut self.fds;
                let read = ready.try_io(|fd| fd.get_ref().read(scratch, fds));
                if let Ok(Ok(n)) = read {
                    self.buf.extend_from_slice(&self.scratch[..n]);
                }
                (read, READ_CHUNK)
            };
            match read {
                Ok(Ok(0)) => return Err("the broker closed the connection".to_owned()),
                Ok(Ok(n)) => {
                    if n < asked {
                        ready.clear_ready();
                    }
                    return Ok(());
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_would_block) => {}
            }
        }
    }

    /// The next whole frame in the bytes read so far, if there is one.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>, String> {
        match decode(&mut self.buf, self.limit) {
            // Memfd payloads: a frame flagged for one gets its bytes now. Other frames are
            // returned as they are, not moved through `take` (moving a frame costs; a fan-out
            // subscriber decodes millions a second).
            Ok(Some(frame)) if wants_fd(frame.kind(), frame.flags()) => {
                memfd::take(frame, &mut self.fds, self.limit).map(Some)
            }
            Ok(frame) => Ok(frame),
            Err(e) => Err(format!("the broker sent a bad frame: {e}")),
        }
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
    /// Writes what the socket takes now, without waiting; `WouldBlock` if it takes nothing. On a
    /// Unix socket `fd` goes beside the bytes (memfd payloads).
    pub(crate) fn try_write_fd(
        &mut self,
        bytes: &[u8],
        fd: Option<BorrowedFd<'_>>,
    ) -> io::Result<usize> {
        let n = self.fd.get_ref().write(bytes, fd)?;
        if n == bytes.len() {
            // Room again: stop being woken each time the peer reads.
            self.waiting = None;
        }
        Ok(n)
    }

    /// Resolves when the socket may take more bytes.
    pub(crate) async fn writable(&mut self) -> io::Result<()> {
        if self.waiting.is_none() {
            let second = self.fd.get_ref().try_clone()?;
            self.waiting = Some(register(second, Interest::WRITABLE)?);
        }
        if let Some(waiting) = &self.waiting {
            let mut ready = waiting.writable().await?;
            // Whether there is room now is for the next write to find out.
            ready.clear_ready();
        }
        Ok(())
    }

    /// Writes all of `bytes`, waiting as long as it takes.
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all_fd(bytes, None).await
    }

    /// [`Writer::write_all`], with `fd` beside the first bytes written.
    pub(crate) async fn write_all_fd(
        &mut self,
        mut bytes: &[u8],
        mut fd: Option<BorrowedFd<'_>>,
    ) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.try_write_fd(bytes, fd) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    bytes = &bytes[n..];
                    fd = None;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
