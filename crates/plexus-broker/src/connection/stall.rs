//! Publish stall, the reader's side: after a batch is routed, a native publisher's reader waits,
//! at most `publish_stall`, for the subscribers' outboxes its events put past their high-water
//! mark to drain under it; those that wrote nothing meanwhile are marked stuck.

use std::time::Duration;

use crate::outbox::Outbox;

/// The outboxes a publisher's last batch left lagging, and how long it may wait for them.
pub struct PublishStall {
    bound: Duration,
    /// Filled by [`crate::router::Router::handle_publisher`].
    pub lagging: Vec<Outbox>,
    /// Each lagging outbox's progress when the wait began.
    seen: Vec<u64>,
}

impl PublishStall {
    /// Stalls of at most `bound` (zero: the router lists nothing, and nobody waits).
    pub fn new(bound: Duration) -> PublishStall {
        PublishStall {
            bound,
            lagging: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Whether the last batch left outboxes to wait for.
    pub fn due(&self) -> bool {
        !self.lagging.is_empty()
    }

    /// Waits until every lagging outbox is at or under its high-water mark (or its writer is
    /// gone), at most the bound in all: one wait however many subscribers lag. An outbox still
    /// past its mark that wrote nothing in that time is marked stuck and stalls no publisher
    /// again until it writes. Then forgets them all.
    pub async fn wait(&mut self) {
        self.seen.clear();
        self.seen.extend(self.lagging.iter().map(Outbox::progress));
        let lagging = &self.lagging;
        let all_below = async {
            for outbox in lagging {
                outbox.below_mark().await;
            }
        };
        if tokio::time::timeout(self.bound, all_below).await.is_err() {
            for (outbox, &seen) in self.lagging.iter().zip(&self.seen) {
                outbox.mark_stuck(seen);
            }
        }
        self.lagging.clear();
    }
}
