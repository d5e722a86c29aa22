//! The deadline timer: the task that answers calls and waits whose deadline passed.

use std::sync::Arc;
use std::time::Instant;

use crate::router::Router;
use crate::shutdown::Shutdown;

/// Answers calls and waits whose deadline passed, sleeping until the next deadline, until
/// shutdown.
pub async fn run(router: Arc<Router>, shutdown: Shutdown) {
    let stop = shutdown.requested();
    tokio::pin!(stop);
    loop {
        let next = router.expire(Instant::now());
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = router.deadline_added() => {}
            _ = &mut stop => return,
        }
    }
}
