//! What a handler knows about the call it answers: method, timeout, and whether the caller gave up.

use std::time::Duration;

use crate::worker::Cancelled;

/// What a handler knows about the call it answers.
#[derive(Debug, Clone)]
pub struct CallContext {
    method: String,
    timeout: Duration,
    cancelled: Cancelled,
}

impl CallContext {
    pub(crate) fn new(method: String, timeout: Duration, cancelled: Cancelled) -> Self {
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
        self.cancelled.is_cancelled()
    }

    /// Resolves when the caller gives up; never, if it does not.
    pub async fn cancelled(&self) {
        self.cancelled.wait().await;
    }
}
