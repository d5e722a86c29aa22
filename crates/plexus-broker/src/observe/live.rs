//! The live feed viewers watch: the monitor records (`router/monitor.rs`) of what the broker
//! routes, sent into one bounded broadcast ring. Sending never waits: a viewer that falls more
//! than [`LIVE_BUFFER`] records behind loses the oldest and is told how many. While nobody
//! watches, no record is built.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::broadcast;

/// Records kept for viewers that have not read them yet.
pub const LIVE_BUFFER: usize = 4096;

/// The feed: the ring and how many viewers watch it.
#[derive(Debug)]
pub struct LiveFeed {
    tx: broadcast::Sender<Bytes>,
    viewers: Arc<AtomicUsize>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        LiveFeed {
            tx: broadcast::Sender::new(LIVE_BUFFER),
            viewers: Arc::default(),
        }
    }
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
        let _ = self.tx.send(record);
    }

    /// A new viewer, seeing records sent from now on.
    pub fn watch(&self) -> Viewer {
        self.viewers.fetch_add(1, Ordering::Relaxed);
        Viewer {
            records: self.tx.subscribe(),
            viewers: self.viewers.clone(),
        }
    }
}
