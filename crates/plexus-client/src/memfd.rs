//! Memfd payloads: a payload of [`THRESHOLD`] bytes or more goes to a broker that agreed in its
//! `welcome` as a sealed memfd passed beside its frame (SCM_RIGHTS) instead of through the
//! socket. A call's params are written straight into their memfd by the caller; a `call` or
//! `reply` that comes with one keeps it unread until its handler or caller reads it (or hands it
//! back); the payloads of other frames are read (`pread`) as soon as they arrive.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use plexus_proto::{FdPayload, Frame, Kind, wants_fd};
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Payloads this large or larger travel as memfds when the broker takes them: the measured
/// crossover (`docs/performance.md`, "Memfd payloads"). Below it, copying through the socket
/// costs no more than creating, filling, sealing and reading a memfd; above it, memfds win
/// whether the worker reads its params or hands them back.
pub(crate) const THRESHOLD: usize = 128 * 1024;

/// The seals every memfd payload carries: nobody can change its bytes or size, or unseal it.
const SEALS: SealFlags = SealFlags::WRITE
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// A new sealed memfd holding `bytes`.
pub(crate) fn create(bytes: &[u8]) -> io::Result<FdPayload> {
    let fd = rustix::fs::memfd_create(
        "plexus-payload",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut written = 0;
    while written < bytes.len() {
        written += rustix::io::write(&fd, &bytes[written..])?;
    }
    rustix::fs::fcntl_add_seals(&fd, SEALS)?;
    Ok(FdPayload::new(fd, bytes.len() as u64))
}

/// `frame` as it goes on a connection where memfds are `agreed` or not: a large payload moved
/// into a new sealed memfd (or left inline if none can be made), a memfd's bytes inline where
/// memfds are not agreed; `None` if those bytes cannot be read (logged; the frame is lost).
pub(crate) fn for_wire(frame: &Frame, agreed: bool) -> Option<Cow<'_, Frame>> {
    match (frame.fd_payload(), agreed) {
        (Some(_), true) => Some(Cow::Borrowed(frame)),
        (Some(_), false) => match frame.inline_payload(read_all) {
            Ok(inline) => Some(Cow::Owned(inline)),
            Err(e) => {
                tracing::error!(error = %e, kind = frame.kind().name(), id = frame.id(), "cannot read a memfd payload to send it inline; the frame is dropped");
                None
            }
        },
        (None, true)
            if frame.payload_len() >= THRESHOLD as u64
                && wants_fd(frame.kind(), plexus_proto::flags::FD_PAYLOAD) =>
        {
            match create(&frame.payload()) {
                Ok(fd) => Some(Cow::Owned(frame.clone().with_fd_payload(fd))),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot make a memfd; the payload goes inline");
                    Some(Cow::Borrowed(frame))
                }
            }
        }
        (None, _) => Some(Cow::Borrowed(frame)),
    }
}

/// `frame` with its memfd (the first of `fds`), if it is flagged to carry one, after checking
/// that it is a sealed memfd and that the frame with its bytes is within `limit`. A `call` or
/// `reply` keeps the memfd unread ([`crate::Payload`]); any other frame gets its bytes inline.
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
    let frame = frame.with_fd_payload(FdPayload::new(fd, len));
    if matches!(frame.kind(), Kind::Call | Kind::Reply) {
        return Ok(frame);
    }
    frame
        .inline_payload(read_all)
        .map_err(|e| format!("cannot read the memfd payload of {what}: {e}"))
}

/// Appends all of the memfd's bytes to `out`.
pub(crate) fn read_all(fd: &FdPayload, out: &mut Vec<u8>) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn big_publish() -> Frame {
        Frame::publish(0, "t", &vec![b'7'; THRESHOLD], false)
    }

    #[test]
    fn a_large_payload_goes_into_a_sealed_memfd_only_where_memfds_are_agreed() {
        let frame = big_publish();
        let sealed = for_wire(&frame, true).expect("a frame");
        let fd = sealed.fd_payload().expect("a memfd");
        assert_eq!(fd.len(), THRESHOLD as u64);
        let seals = rustix::fs::fcntl_get_seals(fd).expect("seals");
        assert!(seals.contains(SEALS), "{seals:?}");
        assert!(sealed.payload().is_empty(), "nothing inline");
        let inline = for_wire(&frame, false).expect("a frame");
        assert!(matches!(inline, Cow::Borrowed(_)), "left as it is");
        let small = Frame::publish(0, "t", b"1", false);
        assert!(
            for_wire(&small, true)
                .expect("a frame")
                .fd_payload()
                .is_none()
        );
    }

    #[test]
    fn a_memfd_goes_as_it_is_where_agreed_and_inline_where_not() {
        let frame = big_publish();
        let sealed = for_wire(&frame, true).expect("a frame").into_owned();
        let kept = for_wire(&sealed, true).expect("a frame");
        assert_eq!(kept.fd_payload(), sealed.fd_payload(), "the same memfd");
        let inline = for_wire(&sealed, false).expect("a frame");
        assert!(inline.fd_payload().is_none());
        assert_eq!(inline.flags() & plexus_proto::flags::FD_PAYLOAD, 0);
        assert_eq!(inline.payload(), frame.payload(), "its bytes inline");
    }
}
