//! Memfd payloads on Unix-socket native connections: reading with `recvmsg` so descriptors that
//! come with the bytes are taken (close-on-exec) rather than lost, checking each is a sealed
//! memfd within the frame limit before its frame is routed, sending a frame's memfd with
//! `sendmsg` (SCM_RIGHTS) to a peer that asked for them, and reading a memfd's bytes (`pread`)
//! for a peer or a feature that needs the payload inline.
//!
//! The protocol's rules (`docs/protocol.md`, "Memfd payloads"): a peer asks in `hello`, the broker
//! agrees in `welcome`; each descriptor travels alone, with the message whose bytes begin with
//! the header of the frame it belongs to, a frame flagged `fd_payload` of kind call, reply,
//! publish or event. Anything else ends the connection with an error naming what was wrong; the
//! descriptor is closed (it is an [`OwnedFd`] from the moment it arrives).

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::task::{Context, Poll};

use bytes::BytesMut;
use plexus_proto::{BROKER_OBJECT, ErrorCode, FdPayload, Frame, HEADER_LEN, Kind, wants_fd};
use rustix::fs::{FileType, SealFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::warn;

use super::socket::{SocketReader, SocketWriter, with_scratch};
use super::stop::Stop;
use crate::conn_id::ConnId;
use crate::contracts::View;
use crate::router::Router;

/// The seals a memfd payload must carry: nobody can change its bytes or size, or remove a seal.
const REQUIRED_SEALS: SealFlags = SealFlags::WRITE
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// The descriptors a connection received and not yet given to a frame, and whether it may send
/// them at all (it asked in its `hello` on a Unix socket).
#[derive(Debug, Default)]
pub struct Received {
    accepting: bool,
    queue: VecDeque<OwnedFd>,
}

impl Received {
    /// From now on descriptors are taken (the peer asked, and the broker agreed).
    pub fn accept(&mut self) {
        self.accepting = true;
    }

    /// Gives `frame`, if it is flagged to carry its payload in a memfd, the descriptor that came
    /// before or with its first bytes, after checking it is a sealed memfd whose size keeps the
    /// frame within `max_frame`.
    pub fn attach(&mut self, frame: Frame, max_frame: u32) -> Result<Frame, Stop> {
        if !wants_fd(frame.kind(), frame.flags()) {
            return Ok(frame);
        }
        let what = format!("{} {}", frame.kind().name(), frame.id());
        let Some(fd) = self.queue.pop_front() else {
            let why = if self.accepting {
                "no descriptor came with it"
            } else {
                "this connection did not ask for fd payloads in its hello (only Unix-socket peers can)"
            };
            return Err(refused(format!("{what} is flagged fd_payload, but {why}")));
        };
        let len = check_memfd(&fd, &what, frame.wire_len(), max_frame)?;
        Ok(frame.with_fd_payload(FdPayload::new(fd, len)))
    }

    /// After every complete frame in the buffer took its descriptor: what is left must belong to
    /// the one frame begun in the buffer, if any.
    pub fn check_left(&self, frame_begun: bool) -> Result<(), Stop> {
        let allowed = usize::from(frame_begun);
        if self.queue.len() > allowed {
            return Err(refused(
                "a descriptor arrived with no frame flagged fd_payload to carry it".to_owned(),
            ));
        }
        Ok(())
    }
}

/// The connection ends with `bad_frame` and `message`.
fn refused(message: String) -> Stop {
    Stop::Refused(ErrorCode::BadFrame, message)
}

/// Checks `fd` is a memfd sealed against every change and that the frame (of `wire_len` bytes
/// without its payload) with its bytes stays within `max_frame`; returns its size.
fn check_memfd(fd: &OwnedFd, what: &str, wire_len: usize, max_frame: u32) -> Result<u64, Stop> {
    let stat = rustix::fs::fstat(fd).map_err(|e| {
        refused(format!(
            "the descriptor with {what} cannot be examined: {e}"
        ))
    })?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind != FileType::RegularFile {
        return Err(refused(format!(
            "the descriptor with {what} is a {}, not a sealed memfd",
            file_type_name(kind)
        )));
    }
    let seals = rustix::fs::fcntl_get_seals(fd).map_err(|_| {
        refused(format!(
            "the descriptor with {what} is a file that takes no seals, not a memfd"
        ))
    })?;
    let missing = REQUIRED_SEALS.difference(seals);
    if !missing.is_empty() {
        return Err(refused(format!(
            "the memfd with {what} lacks the seals {}: its bytes could change while it is read",
            seal_names(missing)
        )));
    }
    let len = u64::try_from(stat.st_size).unwrap_or(0);
    let size = wire_len as u64 + len;
    if size > u64::from(max_frame) {
        return Err(Stop::Refused(
            ErrorCode::FrameTooLarge,
            format!(
                "{what} of {size} bytes (its memfd payload {len}) exceeds the limit of {max_frame} bytes"
            ),
        ));
    }
    Ok(len)
}

fn file_type_name(kind: FileType) -> &'static str {
    match kind {
        FileType::Fifo => "pipe",
        FileType::Socket => "socket",
        FileType::Directory => "directory",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Symlink => "symbolic link",
        _ => "file of unknown type",
    }
}

fn seal_names(seals: SealFlags) -> String {
    [
        (SealFlags::WRITE, "F_SEAL_WRITE"),
        (SealFlags::SHRINK, "F_SEAL_SHRINK"),
        (SealFlags::GROW, "F_SEAL_GROW"),
        (SealFlags::SEAL, "F_SEAL_SEAL"),
    ]
    .iter()
    .filter(|(flag, _)| seals.contains(*flag))
    .map(|(_, name)| *name)
    .collect::<Vec<_>>()
    .join("|")
}

/// A socket's read half that can take descriptors with its bytes.
pub trait ReadFds: AsyncRead + Unpin + Send {
    /// Reads into `buf`'s spare room; a descriptor that came with the bytes goes to `fds`. A
    /// descriptor the connection may not send, or more than one at once, is closed and the read
    /// fails with [`io::ErrorKind::InvalidData`] naming it.
    fn read_fds<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
        _fds: &'a mut Received,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        self.read_buf(buf)
    }
}

#[cfg(test)]
impl ReadFds for &[u8] {}

impl ReadFds for SocketReader {
    async fn read_fds(&mut self, buf: &mut BytesMut, fds: &mut Received) -> io::Result<usize> {
        if !self.is_unix() {
            return self.read_buf(buf).await;
        }
        self.read_with(|sock| receive(sock.as_fd(), buf, fds)).await
    }
}

/// One `recvmsg` into `buf`, taking at most one descriptor: the bytes read, and whether they
/// were fewer than asked for (the socket has nothing more now).
fn receive(
    stream: BorrowedFd<'_>,
    buf: &mut BytesMut,
    fds: &mut Received,
) -> io::Result<(usize, bool)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    // Through the thread's scratch buffer, as every broker socket read (`socket.rs` says why).
    let room = buf.capacity() - buf.len();
    let (msg, asked) = with_scratch(|scratch| {
        let asked = room.clamp(1, scratch.len());
        let msg = recvmsg(stream, &mut scratch[..asked], &mut control)?;
        buf.extend_from_slice(&scratch[..msg.bytes]);
        Ok::<_, io::Error>((msg, asked))
    })?;
    let mut arrived: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            arrived.extend(received);
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) || arrived.len() > 1 {
        return Err(violation(
            "more than one descriptor arrived at once (at most one, with the frame it belongs to)",
        ));
    }
    if let Some(fd) = arrived.pop() {
        if !fds.accepting {
            return Err(violation(
                "a descriptor arrived on a connection that did not ask for fd payloads in its hello",
            ));
        }
        fds.queue.push_back(fd);
    }
    Ok((msg.bytes, msg.bytes < asked))
}

fn recvmsg(
    stream: BorrowedFd<'_>,
    into: &mut [u8],
    control: &mut RecvAncillaryBuffer<'_>,
) -> io::Result<rustix::net::RecvMsg> {
    let mut iov = [IoSliceMut::new(into)];
    Ok(rustix::net::recvmsg(
        stream,
        &mut iov,
        control,
        RecvFlags::CMSG_CLOEXEC,
    )?)
}

fn violation(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A socket's write half that may send descriptors.
pub trait WriteFds: AsyncWrite + Unpin + Send {
    /// Whether the socket is a Unix socket, which can carry descriptors.
    fn is_unix(&self) -> bool {
        false
    }

    /// Sends `parts` with `fd` in one `sendmsg`, waiting for room: the bytes it took. Only for a
    /// Unix socket ([`WriteFds::is_unix`]).
    fn poll_send_with_fd(
        &mut self,
        _cx: &mut Context<'_>,
        _parts: &[IoSlice<'_>],
        _fd: BorrowedFd<'_>,
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }
}

// Performance: the outbox micro-benchmark's writer writes into a sink, which carries no
// descriptors.
impl WriteFds for tokio::io::Sink {}

impl WriteFds for SocketWriter {
    fn is_unix(&self) -> bool {
        SocketWriter::is_unix(self)
    }

    fn poll_send_with_fd(
        &mut self,
        cx: &mut Context<'_>,
        parts: &[IoSlice<'_>],
        fd: BorrowedFd<'_>,
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |sock| send_with_fd(sock.as_fd(), parts, fd))
    }
}

/// One `sendmsg` of `parts` with `fd` attached.
fn send_with_fd(
    socket: BorrowedFd<'_>,
    parts: &[IoSlice<'_>],
    fd: BorrowedFd<'_>,
) -> io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    control.push(SendAncillaryMessage::ScmRights(&fds));
    Ok(rustix::net::sendmsg(
        socket,
        parts,
        &mut control,
        SendFlags::NOSIGNAL,
    )?)
}

/// Writes a frame whose payload is a memfd: with the memfd (one `sendmsg` whose bytes begin with
/// the frame's header) when the peer takes them, else with its bytes inline.
pub async fn write_fd_frame<W: WriteFds>(
    socket: &mut W,
    frame: &Frame,
    fd: &FdPayload,
    peer_takes_fds: bool,
) -> io::Result<()> {
    let head = frame.header().encode();
    if !(peer_takes_fds && socket.is_unix()) {
        let inline = inline(frame)?;
        socket.write_all(&inline.header().encode()).await?;
        return socket.write_all(inline.body()).await;
    }
    let iov = [IoSlice::new(&head), IoSlice::new(frame.body())];
    let sent = poll_fn(|cx| socket.poll_send_with_fd(cx, &iov, fd.as_fd())).await?;
    if sent < HEADER_LEN {
        socket.write_all(&head[sent..]).await?;
        socket.write_all(frame.body()).await
    } else {
        socket.write_all(&frame.body()[sent - HEADER_LEN..]).await
    }
}

/// `frame` with its memfd's bytes inline (itself when it has none).
pub fn inline(frame: &Frame) -> io::Result<Frame> {
    frame.inline_payload(read_all)
}

/// Appends all of the memfd's bytes to `out`.
fn read_all(fd: &FdPayload, out: &mut Vec<u8>) -> io::Result<()> {
    let len = usize::try_from(fd.len()).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
    let end = out.len() + len;
    out.reserve_exact(len);
    let mut offset = 0u64;
    while out.len() < end {
        let read = rustix::io::pread(fd, rustix::buffer::spare_capacity(out), offset)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the memfd is shorter than its size",
            ));
        }
        offset += read as u64;
    }
    Ok(())
}

/// Replaces the memfd payloads of `batch` by their bytes where the router will read them: every
/// one while [`Router::reads_payloads`], else calls to the broker's own object.
pub fn inline_where_needed(
    router: &Router,
    conn: ConnId,
    view: &mut View,
    batch: &mut VecDeque<Frame>,
) {
    if !batch.iter().any(|f| f.fd_payload().is_some()) {
        return;
    }
    let all = router.reads_payloads(view);
    for frame in batch.iter_mut().filter(|f| f.fd_payload().is_some()) {
        let broker_call = frame.kind() == Kind::Call && frame.string(0) == BROKER_OBJECT;
        if !(all || broker_call) {
            continue;
        }
        match inline(frame) {
            Ok(inlined) => *frame = inlined,
            Err(e) => warn!(conn, error = %e, "cannot read a memfd payload; routed as it is"),
        }
    }
}
