//! A connection's bounded outbox: the queue of frames on their way to its socket, with the byte
//! count that bounds it, and the native writer that drains it with coalesced writes (small frames
//! copied into one buffer, large ones written from their own bytes in the same vectored write).
//!
//! Calls and events ([`Outbox::push`]) are refused past the limit. Answers
//! ([`Outbox::push_always`]) are never refused, so they can take the count past it; the
//! connection's reader then stops reading ([`Outbox::room`]) until the writer has drained the
//! count back under the limit, so a peer that asks and does not read is no longer read from.
//!
//! Publish stall: past half the limit (the high-water mark) an outbox is *lagging*
//! ([`Outbox::lagging`]); a publisher whose events put it there waits a bounded time for it to
//! drain ([`Outbox::below_mark`]), and an outbox that wrote nothing in that time is marked
//! stuck ([`Outbox::mark_stuck`]) and lags no more until its writer writes again.

use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use plexus_proto::{Frame, encode};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::connection::{WriteFds, write_fd_frame};
use crate::quotas::ByteQuota;

// Performance.
mod queue;

/// Memory a queued frame holds besides its wire bytes: the frame itself in the queue, and the
/// allocation of its body. Counting it makes the limit bound memory for small frames too (a
/// one-byte event holds several times its wire size).
const FRAME_OVERHEAD: usize = size_of::<Frame>() + 64;

/// Memfd payloads: what a queued memfd counts at least, besides its frame, so that the limit
/// also bounds how many descriptors an outbox holds (an `outbox_limit` of 32 MiB: 32).
pub const FD_HELD_AT_LEAST: usize = 1024 * 1024;

/// What a queued frame counts against the limit: a memfd payload counts its size, at least
/// [`FD_HELD_AT_LEAST`].
pub fn held(frame: &Frame) -> usize {
    let fd = frame
        .fd_payload()
        .map_or(0, |fd| (fd.len() as usize).max(FD_HELD_AT_LEAST));
    frame.wire_len() + FRAME_OVERHEAD + fd
}

/// Most frames the writer takes off the queue for one write.
const BATCH_FRAMES: usize = 512;
/// Bytes after which the writer stops adding frames to one write.
const BATCH_BYTES: usize = 256 * 1024;
/// The writer's buffer, grown past this by a burst, is given back once the queue is empty.
const KEEP_BUFFER: usize = 16 * 1024;
/// The writer's list of frames taken, grown past this by a burst, is given back once the queue
/// is empty.
const KEEP_FRAMES: usize = 64;
/// Frames this large or larger are not copied into the batch buffer: their header and body go to
/// the socket in one vectored write, after what the buffer holds.
const COPY_BELOW: usize = 16 * 1024;

/// The sending side of a connection's outbox. Cloning it shares the queue.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: queue::Sender,
    shared: Arc<Shared>,
    limit: usize,
    // Publish stall.
    /// The high-water mark: half the limit, so that an outbox just under it still takes the
    /// largest frame (`outbox_limit` is at least `max_frame`) and a whole read's batch.
    mark: usize,
}

/// [`Shared::stuck_at`] of an outbox that was never found stuck.
const NEVER_STUCK: u64 = u64::MAX;

/// What both sides of an outbox share.
#[derive(Debug)]
struct Shared {
    /// What the frames queued and not yet written hold, as [`held`] counts it.
    queued: AtomicUsize,
    /// Signalled when the writer brings `queued` from over the limit to under it.
    drained: Notify,
    /// Access control: the per-user quota of bytes this outbox also counts against, if any.
    quota: OnceLock<Arc<ByteQuota>>,
    /// Dashboard: frames queued to the socket so far.
    frames_out: AtomicU64,
    /// Dashboard: their wire size.
    bytes_out: AtomicU64,
    /// Memfd payloads: whether the peer takes them (it asked in its `hello`, on a Unix socket).
    takes_fds: AtomicBool,
    // Publish stall.
    /// Writes to the socket so far (each socket write of the native writer, each release of the
    /// others): the writer's progress.
    progress: AtomicU64,
    /// `progress` when a stall found the outbox lagging and not writing; it is stuck while
    /// `progress` still has that value. [`NEVER_STUCK`] at first.
    stuck_at: AtomicU64,
    /// Signalled when the writer brings `queued` from over the high-water mark to under it.
    below_mark: Notify,
    /// The last routing pass that listed the outbox as lagging ([`Outbox::list_once`]).
    listed: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            queued: AtomicUsize::new(0),
            drained: Notify::new(),
            quota: OnceLock::new(),
            frames_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            takes_fds: AtomicBool::new(false),
            progress: AtomicU64::new(0),
            stuck_at: AtomicU64::new(NEVER_STUCK),
            below_mark: Notify::new(),
            listed: AtomicU64::new(0),
        }
    }
}

impl Drop for Shared {
    /// Access control: what was queued and never written (the writer was aborted, or the peer
    /// went away) stops counting against the user's quota with the outbox.
    fn drop(&mut self) {
        if let Some(quota) = self.quota.get() {
            quota.sub(*self.queued.get_mut());
        }
    }
}

/// The outbox was over its byte limit; the frame was not queued.
#[derive(Debug, Clone, Copy)]
pub struct Full;

/// The receiving side, owned by the task that writes the connection's socket.
pub struct OutboxReceiver {
    rx: queue::Receiver,
    shared: Arc<Shared>,
    limit: usize,
    mark: usize,
}

/// A new outbox holding at most `limit` bytes of calls and events.
pub fn outbox(limit: usize) -> (Outbox, OutboxReceiver) {
    let (tx, rx) = queue::channel();
    let shared = Arc::new(Shared::default());
    (
        Outbox {
            tx,
            shared: shared.clone(),
            limit,
            mark: limit / 2,
        },
        OutboxReceiver {
            rx,
            shared,
            limit,
            mark: limit / 2,
        },
    )
}

impl Outbox {
    /// Queues an unsolicited frame (a call or an event) unless the outbox is over its limit.
    pub fn push(&self, frame: Frame) -> Result<(), Full> {
        let len = held(&frame);
        if self.queued() + len > self.limit {
            return Err(Full);
        }
        if let Some(quota) = self.shared.quota.get()
            && !quota.has_room(len)
        {
            return Err(Full);
        }
        self.push_always(frame);
        Ok(())
    }

    /// Queues a frame the peer asked for (an answer to its own request) regardless of the limit.
    /// It still counts: past the limit, the connection's reader waits in [`Outbox::room`].
    pub fn push_always(&self, frame: Frame) {
        let len = held(&frame);
        // Count before the writer can see the frame: it subtracts once the frame is written, and
        // on another thread it could otherwise subtract first and wrap the count.
        self.shared.queued.fetch_add(len, Ordering::Relaxed);
        let quota = self.shared.quota.get();
        if let Some(quota) = quota {
            quota.add(len);
        }
        let wire = frame.wire_len() as u64;
        if self.tx.send(frame).is_err() {
            self.shared.queued.fetch_sub(len, Ordering::Relaxed);
            if let Some(quota) = quota {
                quota.sub(len);
            }
        } else {
            self.shared.frames_out.fetch_add(1, Ordering::Relaxed);
            self.shared.bytes_out.fetch_add(wire, Ordering::Relaxed);
        }
    }

    /// Access control: counts what this outbox queues from now on against `quota` too (the
    /// bytes queued to all the connections of one user). Set once, before anything is queued.
    pub fn count_against(&self, quota: Arc<ByteQuota>) {
        let _ = self.shared.quota.set(quota);
    }

    /// Dashboard: frames queued to the socket so far, and their wire size.
    #[cfg(feature = "http")]
    pub fn sent(&self) -> (u64, u64) {
        (
            self.shared.frames_out.load(Ordering::Relaxed),
            self.shared.bytes_out.load(Ordering::Relaxed),
        )
    }

    /// Memfd payloads: from now on frames with one are written with it, not inline. Set before
    /// the `welcome`.
    pub fn send_fds(&self) {
        self.shared.takes_fds.store(true, Ordering::Relaxed);
    }

    /// Memfd payloads: whether frames with one are written with it.
    pub fn sends_fds(&self) -> bool {
        self.shared.takes_fds.load(Ordering::Relaxed)
    }

    /// Bytes queued and not yet written, as [`held`] counts them.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// Whether answers took the queue past its limit: the peer asks faster than it reads, and
    /// its reader should read no more requests until [`Outbox::room`].
    pub fn over_limit(&self) -> bool {
        self.queued() > self.limit
    }

    /// Waits until the queue is back within its limit: `true`, at once when it is within.
    /// `false` once its writer is gone (the socket failed, or the peer closed it): nothing queued
    /// will be written any more, so the queue never drains and the connection is over. Cancel
    /// safe.
    pub async fn room(&self) -> bool {
        while self.over_limit() {
            if self.tx.is_closed() {
                return false;
            }
            let drained = self.shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if !self.over_limit() {
                return true;
            }
            tokio::select! {
                _ = drained => {}
                _ = self.tx.closed() => return !self.over_limit(),
            }
        }
        true
    }
}

// Publish stall.
impl Outbox {
    /// Whether the outbox is past its high-water mark (half its limit) and was not found stuck
    /// since its writer last wrote: a publisher whose events put it there should wait for it
    /// ([`Outbox::below_mark`]).
    pub fn lagging(&self) -> bool {
        self.past_mark() && !self.stuck()
    }

    /// Whether the outbox holds more than its high-water mark, half its limit.
    pub fn past_mark(&self) -> bool {
        self.queued() > self.mark
    }

    /// Whether a stall found the outbox lagging and its writer has written nothing since.
    fn stuck(&self) -> bool {
        self.shared.stuck_at.load(Ordering::Relaxed) == self.progress()
    }

    /// The writer's progress: how many writes it finished. Compare two readings to tell
    /// whether it wrote anything in between.
    pub fn progress(&self) -> u64 {
        self.shared.progress.load(Ordering::Relaxed)
    }

    /// Marks the outbox stuck if its writer has written nothing since its progress was `seen`:
    /// it lags no more (stalls no publisher) until the writer writes again.
    pub fn mark_stuck(&self, seen: u64) {
        if self.queued() > self.mark && self.progress() == seen {
            self.shared.stuck_at.store(seen, Ordering::Relaxed);
        }
    }

    /// Whether routing pass `pass` has not listed the outbox yet; it has from now on. Keeps a
    /// publisher's list of lagging outboxes free of repeats without searching it.
    pub fn list_once(&self, pass: u64) -> bool {
        self.shared.listed.swap(pass, Ordering::Relaxed) != pass
    }

    /// Waits until the outbox is at or under its high-water mark, or its writer is gone.
    /// Cancel safe.
    pub async fn below_mark(&self) {
        while self.queued() > self.mark {
            if self.tx.is_closed() {
                return;
            }
            let below = self.shared.below_mark.notified();
            tokio::pin!(below);
            below.as_mut().enable();
            if self.queued() <= self.mark {
                return;
            }
            tokio::select! {
                _ = below => {}
                _ = self.tx.closed() => return,
            }
        }
    }
}

impl OutboxReceiver {
    /// Waits for queued frames and moves up to [`BATCH_FRAMES`] of them to `batch`, still counted
    /// against the limit until [`OutboxReceiver::release`]. Returns how many; 0 once every
    /// `Outbox` is dropped and the queue is empty.
    pub async fn recv_batch(&mut self, batch: &mut Vec<Frame>) -> usize {
        self.rx.recv_many(batch, BATCH_FRAMES).await
    }

    /// Stops counting `bytes` (what the frames taken held) against the limit, and wakes a
    /// reader waiting in [`Outbox::room`] if that brings the queue back within the limit (and
    /// publishers waiting in [`Outbox::below_mark`] if it brings it under the mark). Counts as
    /// the writer's progress.
    pub fn release(&self, bytes: usize) {
        if let Some(quota) = self.shared.quota.get() {
            quota.sub(bytes);
        }
        self.wrote();
        let before = self.shared.queued.fetch_sub(bytes, Ordering::Relaxed);
        if before > self.limit && before - bytes <= self.limit {
            self.shared.drained.notify_waiters();
        }
        // Publish stall.
        if before > self.mark && before - bytes <= self.mark {
            self.shared.below_mark.notify_waiters();
        }
    }

    /// Publish stall: counts a write to the socket as the writer's progress, so that a stall
    /// does not take a subscriber that is working through a batch of large frames for stuck.
    /// (The batch's bytes are released once it is all written: released after each write, a
    /// worker's outbox would take new calls while the ones written are still being answered,
    /// and a caller that never reads would hold more answers; `hostile`'s
    /// `pipelined_one_mib_calls_never_read` grew 99–107 MiB that way against its 87 MiB bound.)
    fn wrote(&self) {
        self.shared.progress.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes native frames until every `Outbox` is dropped and the queue is empty, or the socket
    /// fails. Everything queued at a time goes out in one write.
    pub async fn write_all_to<W: WriteFds>(mut self, mut socket: W) -> std::io::Result<()> {
        // Performance: both are allocated by the first write and given back after a burst, so
        // an idle connection holds neither.
        let mut batch = Vec::new();
        let mut buf = BytesMut::new();
        while self.recv_batch(&mut batch).await > 0 {
            let mut taken = 0;
            for frame in batch.drain(..) {
                taken += held(&frame);
                // Memfd payloads: the descriptor goes with the first bytes of its frame.
                if let Some(fd) = frame.fd_payload() {
                    socket.write_all(&buf).await?;
                    buf.clear();
                    let takes_fds = self.shared.takes_fds.load(Ordering::Relaxed);
                    write_fd_frame(&mut socket, &frame, fd, takes_fds).await?;
                    self.wrote();
                    continue;
                }
                if frame.wire_len() >= COPY_BELOW {
                    let head = frame.header().encode();
                    write_all_vectored(&mut socket, [&buf[..], &head[..], frame.body()]).await?;
                    buf.clear();
                    self.wrote();
                    continue;
                }
                encode(&frame, &mut buf);
                if buf.len() >= BATCH_BYTES {
                    socket.write_all(&buf).await?;
                    buf.clear();
                    self.wrote();
                }
            }
            if !buf.is_empty() {
                socket.write_all(&buf).await?;
                buf.clear();
            }
            self.release(taken);
            if self.rx.is_empty() {
                if buf.capacity() > KEEP_BUFFER {
                    buf = BytesMut::new();
                }
                if batch.capacity() > KEEP_FRAMES {
                    batch = Vec::new();
                }
            }
        }
        socket.shutdown().await
    }
}

/// Writes `parts` in order, in as few vectored writes as the socket takes them in.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    socket: &mut W,
    mut parts: [&[u8]; 3],
) -> std::io::Result<()> {
    loop {
        let slices = parts.map(IoSlice::new);
        let first = parts.iter().position(|p| !p.is_empty());
        let Some(first) = first else {
            return Ok(());
        };
        let mut n = socket.write_vectored(&slices[first..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        for part in &mut parts[first..] {
            let took = n.min(part.len());
            *part = &part[took..];
            n -= took;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quotas::{Book, Owner};

    #[test]
    fn outboxes_of_one_user_share_its_byte_quota_until_they_are_gone() {
        let frame = Frame::publish(0, "t", b"0123456789", false);
        let mut book = Book::default();
        let quota = book.byte_quota(Owner::Uid(7), 2 * held(&frame));
        let (a, a_rx) = outbox(1 << 20);
        let (b, b_rx) = outbox(1 << 20);
        a.count_against(quota.clone());
        b.count_against(quota.clone());
        assert!(a.push(frame.clone()).is_ok());
        assert!(b.push(frame.clone()).is_ok());
        assert!(a.push(frame.clone()).is_err(), "the user's quota is full");
        assert!(b.push(frame.clone()).is_err(), "for all its connections");
        a_rx.release(held(&frame));
        assert!(
            b.push(frame.clone()).is_ok(),
            "written bytes free the quota"
        );
        drop((b, b_rx));
        assert!(
            a.push(frame.clone()).is_ok(),
            "a closed outbox's bytes are freed"
        );
        assert!(a.push(frame.clone()).is_ok());
        assert!(a.push(frame).is_err());
    }
}
