//! An accepted Unix or TCP socket registered with the runtime for reading only, split into a
//! reading and a writing half.
//!
//! A socket registered for writing too wakes the broker each time the peer reads what it was
//! sent (the kernel reports it writable again): a wasted wake-up per message. So the socket is
//! registered for reading only, and a write that would block waits on a second descriptor of the
//! same socket, registered for writing only while that lasts (as the client does).

use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// The size of each runtime thread's read scratch buffer: the most one read takes.
const READ_SCRATCH: usize = 64 * 1024;

thread_local! {
    /// Where reads land before they are copied into the reader's buffer, one per thread and
    /// initialized once: reading straight into a buffer's uninitialized capacity would need it
    /// zeroed first (this workspace forbids `unsafe`), which costs more than copying the few
    /// bytes a read brings, and would make resident the whole room reserved for a large frame
    /// (queued large frames keep their read buffer alive), not only the bytes read.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `read` with this thread's scratch buffer ([`READ_SCRATCH`] bytes), where every read of
/// a broker socket lands before it is copied into its connection's buffer.
pub fn with_scratch<T>(read: impl FnOnce(&mut [u8]) -> T) -> T {
    SCRATCH.with_borrow_mut(|scratch| {
        if scratch.is_empty() {
            scratch.resize(READ_SCRATCH, 0);
        }
        read(scratch)
    })
}

/// A connected, non-blocking Unix or TCP socket.
#[derive(Debug)]
pub enum Sock {
    /// A Unix stream socket.
    Unix(UnixStream),
    /// A TCP stream.
    Tcp(TcpStream),
}

impl Sock {
    /// Takes an accepted tokio socket out of the runtime, to register it anew.
    pub fn from_unix(stream: tokio::net::UnixStream) -> io::Result<Sock> {
        stream.into_std().map(Sock::Unix)
    }

    /// As [`Sock::from_unix`], for TCP.
    pub fn from_tcp(stream: tokio::net::TcpStream) -> io::Result<Sock> {
        stream.into_std().map(Sock::Tcp)
    }

    /// A second descriptor of the same socket.
    fn try_clone(&self) -> io::Result<Sock> {
        match self {
            Sock::Unix(s) => s.try_clone().map(Sock::Unix),
            Sock::Tcp(s) => s.try_clone().map(Sock::Tcp),
        }
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => (&*s).read(buf),
            Sock::Tcp(s) => (&*s).read(buf),
        }
    }

    /// Writes what the socket takes now; `WouldBlock` if it takes nothing.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => (&*s).write(buf),
            Sock::Tcp(s) => (&*s).write(buf),
        }
    }

    /// As [`Sock::write`], from several buffers in one system call.
    pub fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => (&*s).write_vectored(bufs),
            Sock::Tcp(s) => (&*s).write_vectored(bufs),
        }
    }

    fn shutdown_write(&self) -> io::Result<()> {
        let done = match self {
            Sock::Unix(s) => s.shutdown(Shutdown::Write),
            Sock::Tcp(s) => s.shutdown(Shutdown::Write),
        };
        match done {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }
}

impl std::os::fd::AsFd for Sock {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Sock::Unix(s) => s.as_fd(),
            Sock::Tcp(s) => s.as_fd(),
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

/// Splits `sock` into its halves, registered for reading only.
pub fn split(sock: Sock) -> io::Result<(SocketReader, SocketWriter)> {
    let fd = Arc::new(register(sock, Interest::READABLE)?);
    let writer = SocketWriter {
        fd: fd.clone(),
        waiting: None,
    };
    Ok((SocketReader { fd }, writer))
}

/// The reading half.
#[derive(Debug)]
pub struct SocketReader {
    fd: Arc<AsyncFd<Sock>>,
}

/// The writing half. A write that would block waits for room on a second descriptor.
#[derive(Debug)]
pub struct SocketWriter {
    fd: Arc<AsyncFd<Sock>>,
    /// A second descriptor registered for writing, while a write waits for room.
    waiting: Option<AsyncFd<Sock>>,
}

impl SocketReader {
    /// Whether this is a Unix socket.
    pub fn is_unix(&self) -> bool {
        matches!(self.fd.get_ref(), Sock::Unix(_))
    }

    /// Runs `read` once the socket is readable, until it does not find the socket empty. `read`
    /// returns what it read and whether it took everything there was (then the next read waits
    /// for the socket instead of trying again for nothing).
    pub async fn read_with(
        &self,
        mut read: impl FnMut(&Sock) -> io::Result<(usize, bool)>,
    ) -> io::Result<usize> {
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.try_io(|fd| read(fd.get_ref())) {
                Ok(Ok((n, drained))) => {
                    if drained {
                        ready.clear_ready();
                    }
                    return Ok(n);
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }
}

impl AsyncRead for SocketReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut ready = ready!(self.fd.poll_read_ready(cx))?;
            let read = with_scratch(|scratch| {
                let want = buf.remaining().min(scratch.len());
                let read = ready.try_io(|fd| fd.get_ref().read(&mut scratch[..want]));
                if let Ok(Ok(n)) = read {
                    buf.put_slice(&scratch[..n]);
                    if n < want {
                        // The read took everything there was: the next one waits for the
                        // socket instead of trying again for nothing.
                        ready.clear_ready();
                    }
                }
                read
            });
            match read {
                Ok(Ok(_)) => return Poll::Ready(Ok(())),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => {}
            }
        }
    }
}

impl SocketWriter {
    /// Whether this is a Unix socket.
    pub fn is_unix(&self) -> bool {
        matches!(self.fd.get_ref(), Sock::Unix(_))
    }

    /// Runs `write` until the socket takes something, waiting for room while it takes nothing.
    pub fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        write: impl Fn(&Sock) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            match write(self.fd.get_ref()) {
                Ok(n) => {
                    // Room again: stop being woken each time the peer reads.
                    self.waiting = None;
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
            if self.waiting.is_none() {
                let second = self.fd.get_ref().try_clone()?;
                self.waiting = Some(register(second, Interest::WRITABLE)?);
            }
            if let Some(waiting) = &self.waiting {
                let mut ready = ready!(waiting.poll_write_ready(cx))?;
                // Whether there is room now is for the next write to find out.
                ready.clear_ready();
            }
        }
    }
}

impl AsyncWrite for SocketWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_with(cx, |s| s.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |s| s.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.fd.get_ref().shutdown_write())
    }
}
