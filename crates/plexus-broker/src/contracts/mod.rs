//! Contracts: JSON Schema 2020-12 schemas for methods' params and results and for topics'
//! payloads, declared at registration or pinned by the operator, compiled once, and checked
//! outside the router lock against a read-mostly snapshot that costs nothing for names without
//! a contract.

mod check;
mod compile;
mod diff;
mod document;
mod pinned;
mod screen;
mod table;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub use check::{Checked, Refusal, check};
pub use compile::{MethodChecks, TopicCheck};
pub use pinned::{Pinned, load_pinned};
pub use screen::screen;
pub use table::{Table, Verdict};

/// The compiled checks in force, by object and method and by topic.
#[derive(Debug, Default)]
pub struct Snapshot {
    objects: HashMap<String, HashMap<String, Arc<MethodChecks>>>,
    topics: HashMap<String, Arc<TopicCheck>>,
}

impl Snapshot {
    /// Whether nothing is checked at all.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.topics.is_empty()
    }

    /// The checks of `object.method`, if it has a contract.
    pub fn method(&self, object: &str, method: &str) -> Option<&Arc<MethodChecks>> {
        self.objects.get(object)?.get(method)
    }

    /// The check of `topic`'s payloads, if it has a contract.
    pub fn topic(&self, topic: &str) -> Option<&Arc<TopicCheck>> {
        self.topics.get(topic)
    }
}

/// The snapshot readers check against: replaced whole (under the router lock) when a contract
/// comes or goes, with a generation number that tells a [`View`] to fetch it again.
#[derive(Debug, Default)]
pub struct Published {
    generation: AtomicU64,
    current: RwLock<Arc<Snapshot>>,
}

impl Published {
    /// Replaces the snapshot.
    fn publish(&self, snapshot: Snapshot) {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = Arc::new(snapshot);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// A view for one connection's reader.
    pub fn view(&self) -> View {
        let mut view = View {
            generation: u64::MAX,
            snapshot: Arc::default(),
        };
        view.current(self);
        view
    }

    fn load(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// One reader's copy of the snapshot, fetched again only when it changed (one atomic load per
/// batch otherwise).
#[derive(Debug)]
pub struct View {
    generation: u64,
    snapshot: Arc<Snapshot>,
}

impl View {
    /// The snapshot in force.
    pub fn current(&mut self, published: &Published) -> &Snapshot {
        let generation = published.generation.load(Ordering::Acquire);
        if generation != self.generation {
            self.generation = generation;
            self.snapshot = published.load();
        }
        &self.snapshot
    }
}
