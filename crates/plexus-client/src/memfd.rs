//! Memfd payloads: a payload of [`THRESHOLD`] bytes or more goes to a broker that agreed in its
//! `welcome` as a sealed memfd passed beside its frame (SCM_RIGHTS) instead of through the
//! socket; a frame that comes with one is given its bytes (`pread`) as soon as it is read, so the
//! rest of the client only ever sees inline payloads.

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use plexus_proto::{FdPayload, Frame, wants_fd};
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Payloads this large or larger travel as memfds when the broker takes them. Below it, copying
/// through the socket costs less than creating, filling and sealing a memfd (`plexus bench
/// payload`, `docs/performance.md`).
pub(crate) const THRESHOLD: usize = 256 * 1024;

/// The seals every memfd payload carries: nobody can change its bytes or size, or unseal it.
const SEALS: SealFlags = SealFlags::WRITE
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// `frame` with its payload moved into a new sealed memfd, if it is [`THRESHOLD`] bytes or more
/// and of a kind that may carry one; else (or if the memfd cannot be made) `None`, and it goes
/// inline.
pub(crate) fn seal(frame: &Frame) -> Option<Frame> {
    if frame.payload_len() < THRESHOLD as u64
        || !wants_fd(frame.kind(), plexus_proto::flags::FD_PAYLOAD)
    {
        return None;
    }
    let payload = frame.payload();
    let fd = (|| -> io::Result<OwnedFd> {
        let fd = rustix::fs::memfd_create(
            "plexus-payload",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        let mut written = 0;
        while written < payload.len() {
            written += rustix::io::write(&fd, &payload[written..])?;
        }
        rustix::fs::fcntl_add_seals(&fd, SEALS)?;
        Ok(fd)
    })();
    match fd {
        Ok(fd) => Some(
            frame
                .clone()
                .with_fd_payload(FdPayload::new(fd, payload.len() as u64)),
        ),
        Err(e) => {
            tracing::debug!(error = %e, "cannot make a memfd; the payload goes inline");
            None
        }
    }
}

/// `frame` with the bytes of its memfd (the first of `fds`) inline, if it is flagged to carry
/// one; a frame of more than `limit` bytes with them is refused.
pub(crate) fn take(frame: Frame, fds: &mut VecDeque<OwnedFd>, limit: u32) -> Result<Frame, String> {
    if !wants_fd(frame.kind(), frame.flags()) {
        return Ok(frame);
    }
    let what = format!("{} {}", frame.kind().name(), frame.id());
    let fd = fds
        .pop_front()
        .ok_or_else(|| format!("the broker sent {what} flagged fd_payload without a descriptor"))?;
    let seals = rustix::fs::fcntl_get_seals(&fd).map_err(|e| {
        format!("the broker sent {what} with a descriptor that is not a memfd: {e}")
    })?;
    if !seals.contains(SEALS) {
        return Err(format!(
            "the broker sent {what} with a memfd that is not sealed"
        ));
    }
    let stat = rustix::fs::fstat(&fd).map_err(|e| e.to_string())?;
    let len = u64::try_from(stat.st_size).unwrap_or(0);
    if frame.wire_len() as u64 + len > u64::from(limit) {
        return Err(format!(
            "the broker sent {what} with a memfd payload of {len} bytes, over the limit of {limit}"
        ));
    }
    frame
        .with_fd_payload(FdPayload::new(fd, len))
        .inline_payload(read_all)
        .map_err(|e| format!("cannot read the memfd payload of {what}: {e}"))
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

/// One `recvmsg` into `buf`; a descriptor that came with the bytes goes to `fds` (close-on-exec).
pub(crate) fn receive(
    socket: &UnixStream,
    buf: &mut [u8],
    fds: &mut VecDeque<OwnedFd>,
) -> io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = rustix::net::recvmsg(socket, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
    let mut arrived: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            arrived.extend(received);
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) || arrived.len() > 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the broker sent more than one descriptor at once",
        ));
    }
    fds.extend(arrived);
    Ok(msg.bytes)
}

/// One `sendmsg` of `bytes` with `fd` beside them (it arrives with their first byte).
pub(crate) fn send(socket: &UnixStream, bytes: &[u8], fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd.as_fd()];
    control.push(SendAncillaryMessage::ScmRights(&fds));
    Ok(rustix::net::sendmsg(
        socket,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?)
}
