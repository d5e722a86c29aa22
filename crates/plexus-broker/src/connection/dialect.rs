//! A dialect connection (ProcBridge, NDJSON, ipc-broker): one task that reads the peer's bytes,
//! drains the outbox and owns the codec that translates both ways.

use std::time::Duration;

use bytes::BytesMut;
use plexus_proto::Frame;
use plexus_proto::dialect::{Decoded, DialectCodec};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, info};

use super::input::Input;
use super::stop::Stop;
use crate::conn_id::ConnId;
use crate::outbox::{Outbox, OutboxReceiver, outbox};
use crate::peer::PeerInfo;
use crate::router::{Attached, Router};
use crate::shutdown::Shutdown;

/// Encoded bytes waiting for the socket past which no more frames are taken from the outbox, so
/// that a peer that does not read fills its outbox (and calls to it fail, events to it drop).
const PENDING_OUTPUT: usize = 256 * 1024;

/// What woke the connection's task.
enum Wake {
    /// A read from the socket: `Ok(false)` at the end of the stream.
    Read(Result<bool, ()>),
    /// Frames taken from the outbox (0 once it is closed).
    Queued(usize),
    /// A write to the socket.
    Wrote(std::io::Result<usize>),
}

/// Serves a dialect connection through `codec` until it ends, attached at once (`peer.client`
/// names the dialect). When the peer closes its sending side, its open requests are still
/// answered (for at most the default call timeout and a second) before the connection is dropped.
pub async fn serve<R, W>(
    conn: ConnId,
    mut input: Input<R>,
    mut writer: W,
    peer: PeerInfo,
    codec: Box<dyn DialectCodec>,
    router: &Router,
    shutdown: &Shutdown,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (outbox, receiver) = outbox(router.config().outbox_limit);
    info!(conn, dialect = %peer.client, pid = ?peer.pid, uid = ?peer.uid, transport = peer.transport, addr = ?peer.addr, "connection opened");
    let mut attached = router.attach(conn, peer, outbox.clone());
    let mut link = Link {
        conn,
        codec,
        receiver,
        out: BytesMut::with_capacity(64 * 1024),
        taken: Vec::new(),
        decoded: Vec::new(),
        routed: Vec::new(),
        bounced: Vec::new(),
    };
    let stop = link
        .run(
            &mut input,
            &mut writer,
            &outbox,
            router,
            &mut attached,
            shutdown,
        )
        .await;
    drop(attached);
    stop.tell_peer(conn, &outbox);
    drop(outbox);
    let grace = router.config().shutdown_grace;
    match tokio::time::timeout(grace, link.flush(&mut writer)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(conn, error = %e, "writing stopped"),
        Err(_) => debug!(conn, "output did not drain in time; closed"),
    }
}

/// A dialect connection's codec and buffers, owned by its one task.
struct Link {
    conn: ConnId,
    codec: Box<dyn DialectCodec>,
    receiver: OutboxReceiver,
    /// Encoded bytes not yet written.
    out: BytesMut,
    /// Frames just taken from the outbox.
    taken: Vec<Frame>,
    /// What the codec made of the peer's bytes.
    decoded: Vec<Decoded>,
    /// Frames for the router.
    routed: Vec<Frame>,
    /// Calls the codec could not carry, answered back to the router as errors.
    bounced: Vec<Frame>,
}

impl Link {
    /// Routes what the first bytes already hold, then reads, routes, encodes and writes until the
    /// connection ends.
    async fn run<R, W>(
        &mut self,
        input: &mut Input<R>,
        writer: &mut W,
        outbox: &Outbox,
        router: &Router,
        attached: &mut Attached<'_>,
        shutdown: &Shutdown,
    ) -> Stop
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if let Err(stop) = self.decode(&mut input.buf, false, outbox, router) {
            return stop;
        }
        let stopping = shutdown.requested();
        tokio::pin!(stopping);
        let mut half_closed: Option<Instant> = None;
        loop {
            if half_closed.is_some() && self.codec.outstanding() == 0 {
                return Stop::Closed;
            }
            let answers_due = async {
                match half_closed {
                    Some(until) => tokio::time::sleep_until(until).await,
                    None => std::future::pending().await,
                }
            };
            let wake = tokio::select! {
                _ = &mut stopping => return Stop::Closed,
                _ = answers_due => return Stop::Closed,
                kick = attached.kicked() => return Stop::Refused(kick.code, kick.message),
                read = input.read_some(), if half_closed.is_none() => Wake::Read(read),
                n = self.receiver.recv_batch(&mut self.taken), if self.out.len() < PENDING_OUTPUT => {
                    Wake::Queued(n)
                }
                wrote = writer.write_buf(&mut self.out), if !self.out.is_empty() => Wake::Wrote(wrote),
            };
            match wake {
                Wake::Read(Ok(more)) => {
                    if !more {
                        let bound = router.config().default_call_timeout + Duration::from_secs(1);
                        half_closed = Some(Instant::now() + bound);
                    }
                    if let Err(stop) = self.decode(&mut input.buf, !more, outbox, router) {
                        return stop;
                    }
                }
                Wake::Queued(0) | Wake::Read(Err(())) | Wake::Wrote(Ok(0) | Err(_)) => {
                    return Stop::Closed;
                }
                Wake::Queued(_) => {
                    self.encode_taken();
                    if !self.bounced.is_empty() {
                        router.bounce(self.conn, self.bounced.drain(..));
                    }
                }
                Wake::Wrote(Ok(_)) => {}
            }
        }
    }

    /// Decodes the peer's bytes (all that is left of them when `eof`): requests go to the router,
    /// answers the codec gives by itself to the outbox. `Err` when the stream cannot go on.
    fn decode(
        &mut self,
        buf: &mut BytesMut,
        eof: bool,
        outbox: &Outbox,
        router: &Router,
    ) -> Result<(), Stop> {
        let result = self.codec.decode(buf, &mut self.decoded);
        if eof && result.is_ok() {
            self.codec.decode_eof(buf, &mut self.decoded);
        }
        for decoded in self.decoded.drain(..) {
            match decoded {
                Decoded::Route(frame) => self.routed.push(frame),
                Decoded::Answer(frame) => {
                    debug!(
                        conn = self.conn,
                        code = frame.error_code().name(),
                        message = frame.string(0),
                        "answered by the dialect"
                    );
                    outbox.push_always(frame);
                }
                Decoded::Dropped(why) => debug!(conn = self.conn, %why, "message dropped"),
            }
        }
        if !self.routed.is_empty() {
            router.handle(self.conn, self.routed.drain(..));
        }
        result.map_err(|fatal| Stop::Refused(fatal.code, fatal.message))
    }

    /// Encodes the frames taken from the outbox into the output, which from now on bounds them
    /// instead of the outbox.
    fn encode_taken(&mut self) {
        let mut bytes = 0;
        for frame in self.taken.drain(..) {
            bytes += frame.wire_len();
            self.codec.encode(&frame, &mut self.out, &mut self.bounced);
        }
        self.receiver.release(bytes);
    }

    /// After the connection is detached: writes the output and whatever is left in the outbox,
    /// then closes the socket. Calls the codec bounces now were already answered by the detach.
    async fn flush<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> std::io::Result<()> {
        loop {
            writer.write_all_buf(&mut self.out).await?;
            if self.receiver.recv_batch(&mut self.taken).await == 0 {
                break;
            }
            self.encode_taken();
            self.bounced.clear();
        }
        writer.shutdown().await
    }
}
