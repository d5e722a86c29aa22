//! Compiling a registration's contract before the router sees it: the reader compiles it on a
//! blocking thread (a large schema can take tens of milliseconds), and the router picks the
//! result up when it routes the `register`, so neither the router lock nor the runtime thread
//! waits for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::Snapshot;
use super::compile::compile;
use super::document::Document;
use super::table::Contract;
use crate::conn_id::ConnId;

/// A contract compiled from a `register` payload, or why it could not be.
pub type Prepared = Result<Arc<Contract>, String>;

/// What was compiled for one request id of one connection: usually one payload, more when a
/// client reuses the id within a batch.
type Compiled = Vec<(Bytes, Prepared)>;

/// Contracts compiled by readers for `register` frames not yet routed, by connection and request
/// id, with the payload they were compiled from. An entry lives from the reader's compile until
/// the router routes the frame (or the connection is detached), so there are at most as many as
/// `register` frames in the readers' current batches.
#[derive(Debug, Default)]
pub struct Preparations {
    map: Mutex<HashMap<(ConnId, u64), Compiled>>,
}

impl Preparations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(ConnId, u64), Compiled>> {
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the `register` `id` of `conn` with `payload` was compiled already.
    pub fn has(&self, conn: ConnId, id: u64, payload: &[u8]) -> bool {
        self.lock()
            .get(&(conn, id))
            .is_some_and(|all| all.iter().any(|(p, _)| p[..] == *payload))
    }

    /// Keeps what compiling the `register` `id` of `conn` with `payload` came to.
    pub fn store(&self, conn: ConnId, id: u64, payload: Bytes, prepared: Prepared) {
        self.lock()
            .entry((conn, id))
            .or_default()
            .push((payload, prepared));
    }

    /// Takes what the reader compiled for this `register`, if it compiled this payload.
    pub fn take(&self, conn: ConnId, id: u64, payload: &[u8]) -> Option<Prepared> {
        let mut map = self.lock();
        let all = map.get_mut(&(conn, id))?;
        let found = all.iter().position(|(p, _)| p[..] == *payload);
        let taken = found.map(|i| all.swap_remove(i).1);
        if all.is_empty() {
            map.remove(&(conn, id));
        }
        taken
    }

    /// Drops what was compiled for a connection that is gone.
    pub fn forget(&self, conn: ConnId) {
        let mut map = self.lock();
        if !map.is_empty() {
            map.retain(|(c, _), _| *c != conn);
        }
    }
}

/// Compiles the contract in a `register` payload for `name`: `None` when it declares no schema
/// (or is over `max_bytes` or not text, which the router refuses itself). `$ref`s to other
/// contracts resolve in `snapshot`.
pub fn compile_offered(
    name: &str,
    payload: &[u8],
    snapshot: &Snapshot,
    max_depth: usize,
    max_bytes: usize,
) -> Option<Prepared> {
    if payload.len() > max_bytes {
        return None;
    }
    let text = std::str::from_utf8(payload).ok()?;
    match Document::parse(text, max_depth) {
        Err(why) => Some(Err(why)),
        Ok(None) => None,
        Ok(Some(doc)) => Some(
            compile(name, &doc, |other| snapshot.document(other))
                .map(|compiled| Arc::new(Contract { doc, compiled })),
        ),
    }
}
