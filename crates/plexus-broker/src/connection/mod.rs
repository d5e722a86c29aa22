//! One accepted connection: tells its dialect from the first bytes, then serves it natively or
//! through the dialect's codec until it closes or the broker shuts down.

mod dialect;
mod fds;
mod input;
mod native;
pub mod socket;
// Publish stall.
mod stall;
mod stop;

use std::sync::Arc;

use plexus_proto::dialect::Dialect;
use tracing::info;

use crate::peer::PeerInfo;
use crate::router::Router;
use crate::shutdown::Shutdown;
use input::Input;

pub use fds::{ReadFds, WriteFds, write_fd_frame};

/// Serves one accepted connection until it closes or the broker shuts down. A connection of a
/// listener that speaks only `forced` (ipc-server's) is not detected.
pub async fn serve<R, W>(
    reader: R,
    writer: W,
    mut peer: PeerInfo,
    router: Arc<Router>,
    shutdown: Shutdown,
    forced: Option<Dialect>,
) where
    R: ReadFds,
    W: WriteFds + 'static,
{
    let conn = router.next_conn_id();
    let config = router.config();
    let max_frame = config.max_frame;
    let mut input = Input::new(
        reader,
        max_frame,
        config.handshake_timeout,
        config.partial_frame_timeout,
    );
    let detected = match forced {
        Some(dialect) => Ok(dialect),
        None => input.detect().await,
    };
    match detected {
        Ok(dialect) => match dialect.codec(max_frame, config.max_pending_per_connection) {
            Some(codec) => {
                peer.client = dialect.client_name().to_owned();
                input.speaks_dialect();
                dialect::serve(conn, input, writer, peer, codec, &router, &shutdown).await;
            }
            None => native::serve(conn, input, writer, peer, &router, &shutdown, None).await,
        },
        Err(stop) => {
            native::serve(conn, input, writer, peer, &router, &shutdown, Some(stop)).await;
        }
    }
    info!(conn, "connection closed");
}
