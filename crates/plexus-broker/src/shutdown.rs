//! The broker's shutdown handle: one signal that tells every task to stop, and the tracker of the
//! tasks that must finish before the broker is done (mini-redis's `Shutdown`, on tokio-util).

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

/// Tells the broker's tasks to stop and tracks them until they have. Clones share both.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    /// Spawns a task that [`Shutdown::finished`] waits for.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Resolves once shutdown has begun.
    pub fn requested(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// Tells every task to stop.
    pub fn begin(&self) {
        self.token.cancel();
        self.tasks.close();
    }

    /// Resolves once shutdown has begun and every task spawned through this handle has finished.
    pub async fn finished(&self) {
        self.tasks.wait().await;
    }
}
