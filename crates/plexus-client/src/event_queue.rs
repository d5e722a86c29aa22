//! A subscription's bounded queue of events: the socket task appends everything one read decoded
//! for the subscription in one batch (one lock, at most one wake-up), and the reader takes all
//! that is queued at once and hands it out one by one without touching shared state.
//!
//! The bound counts every event queued or taken by the reader and not yet handed out; events that
//! do not fit are dropped and counted, and the count rides on the next event that fits.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::event::Event;

/// Events the reader hands out between two reports of how many it holds.
const REPORT_EVERY: usize = 64;

/// The half of the queue the socket task fills.
pub(crate) struct EventQueue {
    shared: Mutex<Shared>,
    /// Events the reader took and has not handed out yet (reported every [`REPORT_EVERY`]).
    in_hand: AtomicUsize,
    /// Most events queued and in hand together.
    capacity: usize,
}

/// What both sides change under the lock.
#[derive(Default)]
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

impl fmt::Debug for EventQueue {
    /// How many events wait, not the events.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventQueue")
            .field("queued", &self.lock().events.len())
            .field("in_hand", &self.in_hand.load(Ordering::Relaxed))
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl fmt::Debug for EventReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventReader")
            .field("queue", &self.queue)
            .field("batch", &self.batch.len())
            .finish()
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use bytes::Bytes;

    use super::*;
    use crate::topic::Topic;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn events(range: std::ops::Range<u32>) -> VecDeque<Event> {
        range
            .map(|i| Event {
                topic: Topic::from("t"),
                payload: Bytes::from(i.to_string()),
                dropped: 0,
            })
            .collect()
    }

    fn seq(event: &Event) -> u32 {
        event.json().unwrap_or(u32::MAX)
    }

    #[test]
    fn one_wake_up_per_batch_and_the_events_in_order() {
        let (queue, mut reader) = event_queue(1000);
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(reader.poll_next(&mut cx).is_pending());
        let mut dropped = 0;
        queue.push_batch(&mut events(0..300), &mut dropped);
        queue.push_batch(&mut events(300..600), &mut dropped);
        assert_eq!(
            counter.0.load(Ordering::Relaxed),
            1,
            "woken once, for the first batch"
        );
        for expected in 0..600 {
            match reader.poll_next(&mut cx) {
                Poll::Ready(Some(event)) => assert_eq!(seq(&event), expected),
                other => panic!("event {expected}: {other:?}"),
            }
        }
        assert!(reader.poll_next(&mut cx).is_pending());
        queue.close();
        assert_eq!(counter.0.load(Ordering::Relaxed), 2, "woken by the close");
        assert!(matches!(reader.poll_next(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn events_taken_and_not_handed_out_count_against_the_bound() {
        let (queue, mut reader) = event_queue(100);
        let mut dropped = 0;
        queue.push_batch(&mut events(0..100), &mut dropped);
        assert_eq!(
            reader.try_next().map(|e| seq(&e)),
            Some(0),
            "the reader took all 100"
        );
        queue.push_batch(&mut events(100..110), &mut dropped);
        assert_eq!(dropped, 10, "99 in hand leave no room");
        for expected in 1..=64 {
            assert_eq!(reader.try_next().map(|e| seq(&e)), Some(expected));
        }
        queue.push_batch(&mut events(110..200), &mut dropped);
        assert_eq!(dropped, 90 - 64, "64 handed out gave 64 places back");
        let rest: Vec<(u32, u32)> = std::iter::from_fn(|| reader.try_next())
            .map(|e| (seq(&e), e.dropped))
            .collect();
        let expected: Vec<(u32, u32)> = (65..100)
            .chain(110..174)
            .map(|i| (i, if i == 110 { 10 } else { 0 }))
            .collect();
        assert_eq!(rest, expected, "the first to fit carries the earlier drops");
    }

    #[test]
    fn a_gone_reader_gets_nothing_queued() {
        let (queue, reader) = event_queue(10);
        drop(reader);
        let (mut staged, mut dropped) = (events(0..5), 0);
        queue.push_batch(&mut staged, &mut dropped);
        assert!(staged.is_empty() && dropped == 0);
        assert_eq!(queue.lock().events.len(), 0);
    }
}
