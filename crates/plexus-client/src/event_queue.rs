//! A subscription's bounded queue of events: the socket task appends everything one read decoded
//! for the subscription in one batch (one lock, at most one wake-up), and the reader takes all
//! that is queued at once and hands it out one by one without touching shared state.
//!
//! The bound counts every event queued or taken by the reader and not yet handed out; events that
//! do not fit are dropped and counted, and the count rides on the next event that fits.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::event::Event;

/// Events the reader hands out between two reports of how many it holds.
const REPORT_EVERY: usize = 64;

/// The half of the queue the socket task fills.
#[derive(Debug)]
pub(crate) struct EventQueue {
    shared: Mutex<Shared>,
    /// Events the reader took and has not handed out yet (reported every [`REPORT_EVERY`]).
    in_hand: AtomicUsize,
    /// Most events queued and in hand together.
    capacity: usize,
}

/// What both sides change under the lock.
#[derive(Debug, Default)]
struct Shared {
    events: VecDeque<Event>,
    /// The reader, waiting for events.
    waker: Option<Waker>,
    /// No more events will come (unsubscribed, or the client is gone).
    closed: bool,
    /// The reader is gone: events are discarded.
    reader_gone: bool,
}

/// The half of the queue a [`crate::Subscription`] reads.
#[derive(Debug)]
pub(crate) struct EventReader {
    queue: Arc<EventQueue>,
    /// The events taken from the queue and not handed out yet, in order.
    batch: VecDeque<Event>,
    /// Events handed out since the last report to `queue.in_hand`.
    handed: usize,
}

/// A queue of at most `capacity` events (at least one), and its reader.
pub(crate) fn event_queue(capacity: usize) -> (Arc<EventQueue>, EventReader) {
    let queue = Arc::new(EventQueue {
        shared: Mutex::new(Shared::default()),
        in_hand: AtomicUsize::new(0),
        capacity: capacity.max(1),
    });
    let reader = EventReader {
        queue: queue.clone(),
        batch: VecDeque::new(),
        handed: 0,
    };
    (queue, reader)
}

impl EventQueue {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // Nothing panics while holding the lock; a poisoned one still holds consistent state.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `staged` in order, as far as there is room, and wakes the reader once; `staged`
    /// is left empty. Each event that does not fit adds one (and what the broker counted before
    /// it) to `dropped`, which the next event that fits carries and which then starts again
    /// from zero.
    pub(crate) fn push_batch(&self, staged: &mut VecDeque<Event>, dropped: &mut u32) {
        let waker = {
            let mut shared = self.lock();
            if shared.reader_gone {
                staged.clear();
                return;
            }
            let held = shared.events.len() + self.in_hand.load(Ordering::Acquire);
            let fit = self.capacity.saturating_sub(held).min(staged.len());
            if let Some(first) = staged.front_mut().filter(|_| fit > 0) {
                first.dropped = dropped.saturating_add(first.dropped);
                *dropped = 0;
            }
            for lost in staged.range(fit..) {
                *dropped = dropped.saturating_add(lost.dropped).saturating_add(1);
            }
            staged.truncate(fit);
            if fit == 0 {
                return;
            }
            if shared.events.is_empty() {
                // The usual case when the reader keeps up: no event moves.
                std::mem::swap(&mut shared.events, staged);
            } else {
                shared.events.append(staged);
            }
            shared.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// No more events will come: the reader gets what is queued, then the end.
    pub(crate) fn close(&self) {
        let waker = {
            let mut shared = self.lock();
            shared.closed = true;
            shared.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl EventReader {
    /// The next event if one is queued now; when none is and more may come, the waker of `cx`
    /// (if given) is woken when they do.
    fn take(&mut self, cx: Option<&mut Context<'_>>) -> Poll<Option<Event>> {
        if let Some(event) = self.hand_out() {
            return Poll::Ready(Some(event));
        }
        let mut shared = self.queue.lock();
        if shared.events.is_empty() {
            if shared.closed {
                return Poll::Ready(None);
            }
            if let Some(cx) = cx {
                match &shared.waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => shared.waker = Some(cx.waker().clone()),
                }
            }
            return Poll::Pending;
        }
        std::mem::swap(&mut shared.events, &mut self.batch);
        self.queue
            .in_hand
            .fetch_add(self.batch.len(), Ordering::Release);
        drop(shared);
        Poll::Ready(self.hand_out())
    }

    /// The next event of the batch taken; reports what it holds every [`REPORT_EVERY`] events
    /// and when the batch runs out, so the queue's room comes back.
    fn hand_out(&mut self) -> Option<Event> {
        let event = self.batch.pop_front()?;
        self.handed += 1;
        if self.handed == REPORT_EVERY || self.batch.is_empty() {
            self.queue.in_hand.fetch_sub(self.handed, Ordering::Release);
            self.handed = 0;
        }
        Some(event)
    }

    /// The next event queued now, if there is one.
    pub(crate) fn try_next(&mut self) -> Option<Event> {
        match self.take(None) {
            Poll::Ready(event) => event,
            Poll::Pending => None,
        }
    }

    /// The next event; `None` once the queue is closed and empty.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.take(Some(cx))
    }
}

impl Drop for EventReader {
    /// The socket task discards this subscription's events from now on, and what is queued goes.
    fn drop(&mut self) {
        let mut shared = self.queue.lock();
        shared.reader_gone = true;
        shared.events.clear();
    }
}
