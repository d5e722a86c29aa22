//! The switch that tells a running handler its caller gave up: one flag, and a wake-up for the
//! handlers waiting on it. Made and dropped once per incoming call, so it costs one allocation
//! and wakes nobody unless it is thrown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Flag {
    thrown: AtomicBool,
    waiters: Notify,
}

/// The session's end: thrown when the caller gives up.
#[derive(Debug)]
pub(crate) struct CancelSwitch(Arc<Flag>);

/// The handler's end: whether, or when, the switch was thrown.
#[derive(Debug, Clone)]
pub(crate) struct Cancelled(Arc<Flag>);

/// A switch and its handler's end.
pub(crate) fn cancel_switch() -> (CancelSwitch, Cancelled) {
    let flag = Arc::new(Flag::default());
    (CancelSwitch(flag.clone()), Cancelled(flag))
}

impl CancelSwitch {
    /// Tells the handler its caller gave up.
    pub(crate) fn cancel(&self) {
        self.0.thrown.store(true, Ordering::Release);
        self.0.waiters.notify_waiters();
    }
}

impl Cancelled {
    /// Whether the caller gave up.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.thrown.load(Ordering::Acquire)
    }

    /// Resolves when the caller gives up; never, if it does not.
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.0.waiters.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the flag is read: a throw in between still wakes this wait.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_thrown_switch_wakes_every_waiter_and_stays_thrown() {
        let (switch, cancelled) = cancel_switch();
        assert!(!cancelled.is_cancelled());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let cancelled = cancelled.clone();
                tokio::spawn(async move { cancelled.wait().await })
            })
            .collect();
        tokio::task::yield_now().await;
        switch.cancel();
        for waiter in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("woken")
                .expect("task");
        }
        assert!(cancelled.is_cancelled());
        cancelled.wait().await;
    }

    #[tokio::test]
    async fn a_switch_dropped_unthrown_never_cancels() {
        let (switch, cancelled) = cancel_switch();
        drop(switch);
        assert!(!cancelled.is_cancelled());
        let wait = tokio::time::timeout(std::time::Duration::from_millis(50), cancelled.wait());
        assert!(wait.await.is_err(), "still waiting");
    }
}
