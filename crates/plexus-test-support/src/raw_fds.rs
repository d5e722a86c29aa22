//! Memfd payloads for raw-frame tests: a Unix-socket [`RawClient`] that asks for them in its
//! `hello`, sends frames with any descriptors beside them (a hostile peer's too), and reads
//! frames with the descriptor that came with each; making and reading memfds.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use plexus_proto::{Frame, Kind, decode, flags, wants_fd};
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tokio::io::Interest;
use tokio::net::UnixStream;

use crate::WAIT;
use crate::raw_client::RawClient;

/// A memfd holding `bytes`, with `seals` added (all four for a valid payload:
/// `WRITE | SHRINK | GROW | SEAL`).
pub fn memfd(bytes: &[u8], seals: SealFlags) -> OwnedFd {
    let fd = rustix::fs::memfd_create(
        "test-payload",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .expect("memfd_create");
    let mut written = 0;
    while written < bytes.len() {
        written += rustix::io::write(&fd, &bytes[written..]).expect("write the memfd");
    }
    if !seals.is_empty() {
        rustix::fs::fcntl_add_seals(&fd, seals).expect("seal the memfd");
    }
    fd
}

/// All the bytes of the file `fd`.
pub fn read_memfd(fd: impl AsFd) -> Vec<u8> {
    let len = rustix::fs::fstat(&fd).expect("fstat").st_size as usize;
    let mut out = vec![0; len];
    let mut at = 0;
    while at < len {
        let n = rustix::io::pread(&fd, &mut out[at..], at as u64).expect("pread");
        assert!(n > 0, "the file is shorter than its size");
        at += n;
    }
    out
}

impl RawClient<UnixStream> {
    /// Says `hello` as `name` asking for memfd payloads; the broker's `welcome` must agree.
    pub async fn hello_fds(stream: UnixStream, name: &str) -> RawClient<UnixStream> {
        let mut c = RawClient::raw(stream);
        c.send(Frame::hello(name).with_flags(flags::FD_PAYLOAD))
            .await;
        let (welcome, fd) = c.recv_with_fd().await;
        assert_eq!(
            welcome.kind(),
            Kind::Welcome,
            "handshake answered with {welcome:?}"
        );
        assert!(fd.is_none(), "no descriptor with the welcome");
        assert_ne!(
            welcome.flags() & flags::FD_PAYLOAD,
            0,
            "the broker agrees to memfd payloads"
        );
        c.conn_id = welcome.id();
        c
    }

    /// Sends `frame` in one `sendmsg` with `fds` beside its first byte, whatever they are.
    pub async fn send_with_fds(&mut self, frame: &Frame, fds: &[BorrowedFd<'_>]) {
        let bytes = frame.to_bytes();
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
        let sent = loop {
            self.stream.writable().await.expect("writable");
            let send = || {
                let mut control = SendAncillaryBuffer::new(&mut space);
                assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
                Ok(rustix::net::sendmsg(
                    &self.stream,
                    &[IoSlice::new(&bytes)],
                    &mut control,
                    SendFlags::NOSIGNAL,
                )?)
            };
            match self.stream.try_io(Interest::WRITABLE, send) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                result => break result.expect("sendmsg"),
            }
        };
        self.send_bytes(&bytes[sent..]).await;
    }

    /// The next frame and the descriptor that came with it, read with `recvmsg` (a plain read
    /// would close it); fails the test after [`WAIT`].
    pub async fn recv_with_fd(&mut self) -> (Frame, Option<OwnedFd>) {
        self.try_recv_with_fd()
            .await
            .expect("a frame arrives before the connection closes")
    }

    /// [`RawClient::recv_with_fd`], `None` once the broker closed the connection.
    pub async fn try_recv_with_fd(&mut self) -> Option<(Frame, Option<OwnedFd>)> {
        let read = async {
            loop {
                if let Some(frame) =
                    decode(&mut self.buf, u32::MAX).expect("broker sends valid frames")
                {
                    let fd = wants_fd(frame.kind(), frame.flags())
                        .then(|| self.fds.pop_front())
                        .flatten();
                    return Some((frame, fd));
                }
                self.stream.readable().await.ok()?;
                let receive = || {
                    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
                    let mut control = RecvAncillaryBuffer::new(&mut space);
                    let mut chunk = vec![0u8; 256 * 1024];
                    let msg = rustix::net::recvmsg(
                        &self.stream,
                        &mut [IoSliceMut::new(&mut chunk)],
                        &mut control,
                        RecvFlags::CMSG_CLOEXEC,
                    )?;
                    let mut got = Vec::new();
                    for m in control.drain() {
                        if let RecvAncillaryMessage::ScmRights(received) = m {
                            got.extend(received);
                        }
                    }
                    chunk.truncate(msg.bytes);
                    Ok((chunk, got))
                };
                match self.stream.try_io(Interest::READABLE, receive) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return None,
                    Ok((chunk, _)) if chunk.is_empty() => return None,
                    Ok((chunk, got)) => {
                        self.buf.extend_from_slice(&chunk);
                        self.fds.extend(got);
                    }
                }
            }
        };
        tokio::time::timeout(WAIT, read)
            .await
            .expect("a frame or the close in time")
    }
}
