//! A native connection: the `hello` handshake, a reader that hands the router every frame a read
//! brings in one batch, and a separate writer task that drains the outbox.

use std::collections::VecDeque;

use plexus_proto::{ErrorCode, Kind, flags};
use tracing::{debug, info};

use super::fds::{self, ReadFds, WriteFds};
use super::input::Input;
use super::stall::PublishStall;
use super::stop::Stop;
use crate::conn_id::ConnId;
use crate::outbox::{Outbox, outbox};
use crate::peer::PeerInfo;
use crate::router::{Attached, Router};
use crate::shutdown::Shutdown;

/// Serves a native connection until it ends, or tells it in a native error frame why it already
/// ended (`refused`) before its `hello`.
pub async fn serve<R, W>(
    conn: ConnId,
    mut input: Input<R>,
    writer: W,
    peer: PeerInfo,
    router: &Router,
    shutdown: &Shutdown,
    refused: Option<Stop>,
) where
    R: ReadFds,
    W: WriteFds + 'static,
{
    let (outbox, receiver) = outbox(router.config().outbox_limit);
    let mut writer_task = shutdown.spawn(receiver.write_all_to(writer));
    let stop = match refused {
        None => session(conn, &mut input, peer, router, &outbox, shutdown).await,
        Some(stop) => stop,
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

/// A session: `hello` (within the handshake timeout, which the input keeps), then frames until
/// the connection ends.
async fn session<R: ReadFds>(
    conn: ConnId,
    input: &mut Input<R>,
    mut peer: PeerInfo,
    router: &Router,
    outbox: &Outbox,
    shutdown: &Shutdown,
) -> Stop {
    let hello = match input.next().await {
        Err(stop) => return stop,
        Ok(hello) if hello.kind() == Kind::Hello => hello,
        Ok(other) => {
            return Stop::Refused(
                ErrorCode::BadFrame,
                format!("the first frame must be hello, not {}", other.kind().name()),
            );
        }
    };
    peer.client = hello.string(0).to_owned();
    // Access control: the token, if the hello carries one (its payload).
    match router.check_token(&hello.payload()) {
        Ok(token) => peer.token = token,
        Err(refused) => return Stop::Refused(refused.code, refused.message),
    }
    // Memfd payloads: a Unix-socket peer that asks sends and gets them from now on.
    if hello.flags() & flags::FD_PAYLOAD != 0 && peer.transport == "unix" {
        input.fds.accept();
        outbox.send_fds();
    }
    info!(conn, client = %peer.client, pid = ?peer.pid, uid = ?peer.uid, transport = peer.transport, addr = ?peer.addr, "connection opened");
    let mut attached = match router.attach(conn, peer, outbox.clone()) {
        Ok(attached) => attached,
        Err(refused) => return Stop::Refused(refused.code, refused.message),
    };
    let stop = route_frames(conn, input, router, outbox, &mut attached, shutdown).await;
    drop(attached);
    stop
}

/// Hands every frame to the router, a read's worth at a time, until the connection ends or the
/// router disconnects it. While answers hold the outbox over its limit, no more frames are routed
/// and nothing more is read until the writer has drained it. When a read's events left
/// subscribers' outboxes past their high-water mark, nothing more is read until they drain under
/// it, for at most `publish_stall` (a publish stall).
async fn route_frames<R: ReadFds>(
    conn: ConnId,
    input: &mut Input<R>,
    router: &Router,
    outbox: &Outbox,
    attached: &mut Attached<'_>,
    shutdown: &Shutdown,
) -> Stop {
    let stopping = shutdown.requested();
    tokio::pin!(stopping);
    let mut batch = VecDeque::new();
    let mut contracts = router.contracts_view();
    let mut stall = PublishStall::new(router.config().publish_stall);
    loop {
        let stop = input.drain_into(&mut batch).err();
        fds::inline_where_needed(router, conn, &mut contracts, &mut batch);
        router.prepare_contracts(conn, &mut contracts, &batch).await;
        router.screen(conn, &mut contracts, &mut batch);
        while !batch.is_empty() {
            let within = || !outbox.over_limit();
            router.handle_publisher(
                conn,
                std::iter::from_fn(|| within().then(|| batch.pop_front()).flatten()),
                &mut stall.lagging,
            );
            if batch.is_empty() {
                break;
            }
            tokio::select! {
                _ = &mut stopping => return Stop::Closed,
                kick = attached.kicked() => return Stop::Refused(kick.code, kick.message),
                drained = outbox.room() => {
                    // The writer is gone (the peer closed, or its socket failed) while answers
                    // held the reader: the outbox never drains, so the connection is over. Going
                    // round again would spin on the held frames for ever, never detached.
                    if !drained {
                        return Stop::Closed;
                    }
                    input.resume();
                }
            }
        }
        if let Some(stop) = stop {
            return stop;
        }
        // Publish stall: the router lock is released; wait for the subscribers this read's
        // events left far behind before reading more.
        if stall.due() {
            tokio::select! {
                _ = &mut stopping => return Stop::Closed,
                kick = attached.kicked() => return Stop::Refused(kick.code, kick.message),
                () = stall.wait() => input.resume(),
            }
        }
        let result = tokio::select! {
            _ = &mut stopping => return Stop::Closed,
            kick = attached.kicked() => return Stop::Refused(kick.code, kick.message),
            r = async {
                if outbox.over_limit() {
                    if !outbox.room().await {
                        return Err(Stop::Closed);
                    }
                    input.resume();
                }
                input.fill().await
            } => r,
        };
        if let Err(stop) = result {
            return stop;
        }
    }
}
