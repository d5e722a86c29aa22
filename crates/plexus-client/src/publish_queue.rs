//! The bound on bytes published and not yet written to the socket, and the error a lost
//! connection leaves for the publisher's next `publish` or `flush`.
//!
//! `publish` does not wait for its frame to be written: it reserves the frame's bytes here, hands
//! the frame to the socket task and returns. The socket task gives the bytes back once the batch
//! holding the frame is written (or dropped with a lost connection), so a publisher faster than
//! the socket waits for room instead of queueing without bound.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::Semaphore;

use crate::Error;

/// Bytes of publishes that may wait for the socket before `publish` waits for room.
pub(crate) const PUBLISH_QUEUE_BYTES: u32 = 1024 * 1024;

/// Room for publishes on one connection, shared by the API and the socket task.
#[derive(Debug)]
pub(crate) struct PublishQueue {
    /// One permit per byte of room.
    room: Semaphore,
    /// The most bytes one publish reserves: a larger frame waits until the queue is empty.
    capacity: u32,
    /// Whether `lost` holds an error, read without the lock on every publish.
    failed: AtomicBool,
    /// Why publishes were dropped unwritten, until a publish or flush reports it.
    lost: Mutex<Option<Error>>,
}

impl PublishQueue {
    /// A queue with room for `capacity` bytes.
    pub(crate) fn new(capacity: u32) -> PublishQueue {
        PublishQueue {
            room: Semaphore::new(capacity as usize),
            capacity,
            failed: AtomicBool::new(false),
            lost: Mutex::new(None),
        }
    }

    /// Waits until a frame of `len` bytes fits, and takes its room; the bytes taken go back with
    /// [`PublishQueue::release`] once the frame is written. Fails once the socket task is gone.
    pub(crate) async fn reserve(&self, len: usize) -> Result<u32, Error> {
        let take = u32::try_from(len).map_or(self.capacity, |len| len.min(self.capacity));
        let permits = self.room.acquire_many(take).await;
        permits.map_err(|_| Error::Closed)?.forget();
        Ok(take)
    }

    /// Gives back the room of publishes written or dropped.
    pub(crate) fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.room.add_permits(bytes);
        }
    }

    /// Remembers that publishes were dropped unwritten, for the next publish or flush to report;
    /// a loss already waiting to be reported stays the one reported.
    pub(crate) fn lose(&self, error: Error) {
        let mut lost = self.lost.lock().unwrap_or_else(PoisonError::into_inner);
        if lost.is_none() {
            *lost = Some(error);
        }
        self.failed.store(true, Ordering::Release);
    }

    /// The loss not yet reported, if any; reported once.
    pub(crate) fn take_error(&self) -> Option<Error> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        let mut lost = self.lost.lock().unwrap_or_else(PoisonError::into_inner);
        self.failed.store(false, Ordering::Release);
        lost.take()
    }

    /// The socket task is gone: publishes waiting for room, and all later ones, fail.
    pub(crate) fn close(&self) {
        self.room.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn room_is_taken_until_released_and_a_frame_larger_than_the_queue_takes_all_of_it() {
        let queue = PublishQueue::new(100);
        assert_eq!(queue.reserve(60).await.expect("room"), 60);
        let waiting = queue.reserve(50);
        tokio::pin!(waiting);
        assert!(
            futures_poll(&mut waiting).is_none(),
            "40 bytes left: a 50-byte frame waits"
        );
        queue.release(60);
        assert_eq!(waiting.await.expect("room"), 50);
        queue.release(50);
        assert_eq!(queue.reserve(1_000).await.expect("all of it"), 100);
    }

    #[tokio::test]
    async fn a_loss_is_reported_once_and_a_closed_queue_refuses() {
        let queue = PublishQueue::new(100);
        assert!(queue.take_error().is_none());
        queue.lose(Error::ConnectionLost("first".into()));
        queue.lose(Error::ConnectionLost("second".into()));
        let reported = queue.take_error().expect("reported");
        assert!(
            matches!(&reported, Error::ConnectionLost(why) if why == "first"),
            "{reported}"
        );
        assert!(queue.take_error().is_none(), "once");
        queue.close();
        assert!(matches!(queue.reserve(1).await, Err(Error::Closed)));
    }

    /// Polls `future` once: its output if it is ready.
    fn futures_poll<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::Pin::new(future).poll(&mut cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        }
    }
}
