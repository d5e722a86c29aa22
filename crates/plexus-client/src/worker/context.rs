//! What a handler knows about the call it answers: method, timeout, and whether the caller gave up.

use std::time::Duration;

use tokio::sync::watch;

/// What a handler knows about the call it answers.
#[derive(Debug, Clone)]
pub struct CallContext {
    method: String,
    timeout: Duration,
    cancelled: watch::Receiver<bool>,
}

impl CallContext {
    pub(crate) fn new(method: String, timeout: Duration, cancelled: watch::Receiver<bool>) -> Self {
        CallContext {
            method,
            timeout,
            cancelled,
        }
    }

    /// The method called.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The time the caller gave the call (as the broker forwarded it).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the caller gave up (cancelled, timed out, or disconnected).
    pub fn is_cancelled(&self) -> bool {
        *self.cancelled.borrow()
    }

    /// Resolves when the caller gives up; never, if it does not.
    pub async fn cancelled(&self) {
        let mut rx = self.cancelled.clone();
        if rx.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
