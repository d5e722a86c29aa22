//! A native connection: the `hello` handshake, a reader that hands the router every frame a read
//! brings in one batch, and a separate writer task that drains the outbox.

use plexus_proto::{ErrorCode, Kind};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::{debug, info};

use super::input::Input;
use super::stop::Stop;
use crate::conn_id::ConnId;
use crate::outbox::{Outbox, outbox};
use crate::peer::PeerInfo;
use crate::router::{Attached, Router};
use crate::shutdown::Shutdown;

/// Serves a native connection until it ends. `hello` is when its `hello` is due, or why it
/// already ended before that (it is told in a native error frame).
pub async fn serve<R, W>(
    conn: ConnId,
    mut input: Input<R>,
    writer: W,
    peer: PeerInfo,
    router: &Router,
    shutdown: &Shutdown,
    hello: Result<Instant, Stop>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (outbox, receiver) = outbox(router.config().outbox_limit);
    let mut writer_task = shutdown.spawn(receiver.write_all_to(writer));
    let stop = match hello {
        Ok(due) => session(conn, &mut input, peer, router, &outbox, shutdown, due).await,
        Err(stop) => stop,
    };
    stop.tell_peer(conn, &outbox);
    drop(outbox);
    let grace = router.config().shutdown_grace;
    match tokio::time::timeout(grace, &mut writer_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => debug!(conn, error = %e, "writer stopped"),
        Ok(Err(e)) => debug!(conn, error = %e, "writer task failed"),
        Err(_) => {
            writer_task.abort();
            debug!(conn, "writer did not drain in time; aborted");
        }
    }
}

/// A session: `hello` before `due`, then frames until the connection ends.
async fn session<R: AsyncRead + Unpin>(
    conn: ConnId,
    input: &mut Input<R>,
    mut peer: PeerInfo,
    router: &Router,
    outbox: &Outbox,
    shutdown: &Shutdown,
    due: Instant,
) -> Stop {
    let hello = match tokio::time::timeout_at(due, input.next()).await {
        Err(_) => return Stop::no_hello(),
        Ok(Err(stop)) => return stop,
        Ok(Ok(hello)) if hello.kind() == Kind::Hello => hello,
        Ok(Ok(other)) => {
            return Stop::Refused(
                ErrorCode::BadFrame,
                format!("the first frame must be hello, not {}", other.kind().name()),
            );
        }
    };
    peer.client = hello.string(0).to_owned();
    info!(conn, client = %peer.client, pid = ?peer.pid, uid = ?peer.uid, transport = peer.transport, addr = ?peer.addr, "connection opened");
    let mut attached = router.attach(conn, peer, outbox.clone());
    let stop = route_frames(conn, input, router, &mut attached, shutdown).await;
    drop(attached);
    stop
}

/// Hands every frame to the router, a read's worth at a time, until the connection ends or the
/// router disconnects it.
async fn route_frames<R: AsyncRead + Unpin>(
    conn: ConnId,
    input: &mut Input<R>,
    router: &Router,
    attached: &mut Attached<'_>,
    shutdown: &Shutdown,
) -> Stop {
    let stopping = shutdown.requested();
    tokio::pin!(stopping);
    let mut batch = Vec::new();
    loop {
        let stop = input.drain_into(&mut batch).err();
        if !batch.is_empty() {
            router.handle(conn, batch.drain(..));
        }
        if let Some(stop) = stop {
            return stop;
        }
        let result = tokio::select! {
            _ = &mut stopping => return Stop::Closed,
            kick = attached.kicked() => return Stop::Refused(kick.code, kick.message),
            r = input.fill() => r,
        };
        if let Err(stop) = result {
            return stop;
        }
    }
}
