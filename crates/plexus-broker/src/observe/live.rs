//! The live feed viewers watch: the monitor records (`router/monitor.rs`) of what the broker
//! routes, sent into one bounded broadcast ring. Sending never waits: a viewer that falls more
//! than [`LIVE_BUFFER`] records behind loses the oldest and is told how many. While nobody
//! watches, no record is built, and the ring is allocated by the first viewer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::broadcast;

/// Records kept for viewers that have not read them yet.
pub const LIVE_BUFFER: usize = 4096;

/// The feed: the ring and how many viewers watch it.
#[derive(Debug, Default)]
pub struct LiveFeed {
    /// Performance: made by the first viewer, so a broker nobody watches does not hold the
    /// ring's [`LIVE_BUFFER`] slots (a third of an idle broker's heap).
    tx: OnceLock<broadcast::Sender<Bytes>>,
    viewers: Arc<AtomicUsize>,
}

/// A viewer's place in the feed; it stops counting as a viewer when dropped.
#[derive(Debug)]
pub struct Viewer {
    /// The records, as JSON text.
    pub records: broadcast::Receiver<Bytes>,
    viewers: Arc<AtomicUsize>,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl LiveFeed {
    /// Whether anyone watches (so records must be built).
    pub fn watched(&self) -> bool {
        self.viewers.load(Ordering::Relaxed) > 0
    }

    /// Viewers watching now.
    pub fn viewers(&self) -> usize {
        self.viewers.load(Ordering::Relaxed)
    }

    /// Sends one record (its JSON text) to every viewer; never waits.
    pub fn send(&self, record: Bytes) {
        if let Some(tx) = self.tx.get() {
            let _ = tx.send(record);
        }
    }

    /// A new viewer, seeing records sent from now on.
    pub fn watch(&self) -> Viewer {
        self.viewers.fetch_add(1, Ordering::Relaxed);
        Viewer {
            records: self
                .tx
                .get_or_init(|| broadcast::Sender::new(LIVE_BUFFER))
                .subscribe(),
            viewers: self.viewers.clone(),
        }
    }
}
