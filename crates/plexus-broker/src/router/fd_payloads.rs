//! Memfd payloads: whether the router reads payloads now (a contract is in force, someone watches
//! the monitor feed, or the broker is in a cluster), so that a reader gives it their bytes.

use super::Router;
use crate::contracts::View;

impl Router {
    /// Whether a frame's payload may be read while it is routed: contracts check it, monitor
    /// records show it, the cluster link forwards it. A reader then replaces memfd payloads by
    /// their bytes before routing, outside the lock.
    pub fn reads_payloads(&self, view: &mut View) -> bool {
        !view.current(&self.contracts).is_empty()
            || self.config.cluster.is_some()
            || self.lock().watched()
    }
}
