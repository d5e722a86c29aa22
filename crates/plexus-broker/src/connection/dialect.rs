//! A dialect connection (ProcBridge, NDJSON, ipc-broker, ipc-server, ipcprims): one task that
//! reads the peer's bytes, drains the outbox and owns the codec that translates both ways.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::BytesMut;
use plexus_proto::Frame;
use plexus_proto::dialect::{Decoded, DialectCodec};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::fds::{self, ReadFds};
use super::input::Input;
use super::stop::Stop;
use crate::conn_id::ConnId;
use crate::contracts::View;
use crate::outbox::{Outbox, OutboxReceiver, held, outbox};
use crate::peer::PeerInfo;
use crate::router::{Attached, Router};
use crate::shutdown::Shutdown;

/// Encoded bytes waiting for the socket past which no more frames are taken from the outbox, so
/// that a peer that does not read fills its outbox (and calls to it fail, events to it drop).
const PENDING_OUTPUT: usize = 256 * 1024;

/// What woke the connection's task.
enum Wake {
    /// A read from the socket: `Ok(false)` at the end of the stream.
    Read(Result<bool, Stop>),
    /// Frames taken from the outbox (0 once it is closed).
    Queued(usize),
    /// A write to the socket.
    Wrote(std::io::Result<usize>),
    /// The gap after a paced message has passed.
    Paced,
}

/// Where a paced dialect (one message per write, see `DialectCodec::message_gap`) is.
#[derive(Clone, Copy)]
enum Pace {
    /// The next message may be written.
    Free,
    /// A message is being written.
    Writing,
    /// A message was written; the next waits until then, or until the peer sends something.
    Until(Instant),
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
    R: ReadFds,
    W: AsyncWrite + Unpin,
{
    let (outbox, receiver) = outbox(router.config().outbox_limit);
    info!(conn, dialect = %peer.client, pid = ?peer.pid, uid = ?peer.uid, transport = peer.transport, addr = ?peer.addr, "connection opened");
    let attached = router.attach(conn, peer, outbox.clone());
    let mut link = Link {
        conn,
        codec,
        receiver,
        out: BytesMut::with_capacity(64 * 1024),
        taken: Vec::new(),
        decoded: Vec::new(),
        routed: VecDeque::new(),
        bounced: Vec::new(),
        pace: Pace::Free,
        contracts: router.contracts_view(),
    };
    let stop = match attached {
        Ok(mut attached) => {
            link.run(
                &mut input,
                &mut writer,
                &outbox,
                router,
                &mut attached,
                shutdown,
            )
            .await
        }
        Err(refused) => Stop::Refused(refused.code, refused.message),
    };
    stop.tell_peer(conn, &outbox);
    drop(outbox);
    let grace = router.config().shutdown_grace;
    match tokio::time::timeout(grace, link.flush(&mut writer, router)).await {
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
    /// Requests for the router, in the order the peer sent them.
    routed: VecDeque<Frame>,
    /// Calls the codec could not carry, answered back to the router as errors.
    bounced: Vec<Frame>,
    /// For a paced dialect: whether its next message may be written.
    pace: Pace,
    /// The contracts requests are checked against before they are routed.
    contracts: View,
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
        R: ReadFds,
        W: AsyncWrite + Unpin,
    {
        let mut ended = self.decode(input, false, outbox).err();
        let stopping = shutdown.requested();
        tokio::pin!(stopping);
        let mut half_closed: Option<Instant> = None;
        let mut held = false;
        loop {
            self.route(outbox, router);
            if self.routed.is_empty() {
                if let Some(stop) = ended.take() {
                    return stop;
                }
                if half_closed.is_some() && self.codec.outstanding() == 0 {
                    return Stop::Closed;
                }
            }
            let reading = half_closed.is_none() && self.routed.is_empty() && !outbox.over_limit();
            if reading && std::mem::replace(&mut held, false) {
                input.resume();
            }
            held |= !reading;
            self.release_paced();
            let pace_due = match self.pace {
                Pace::Until(t) => Some(t),
                Pace::Free | Pace::Writing => None,
            };
            let paced = async {
                match pace_due {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
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
                read = input.read_some(), if reading => Wake::Read(read),
                n = self.receiver.recv_batch(&mut self.taken), if self.out.len() < PENDING_OUTPUT => {
                    Wake::Queued(n)
                }
                wrote = writer.write_buf(&mut self.out), if !self.out.is_empty() => Wake::Wrote(wrote),
                () = paced => Wake::Paced,
            };
            match wake {
                Wake::Read(Ok(more)) => {
                    if let Pace::Until(_) = self.pace {
                        // The peer spoke after reading what was written last.
                        self.pace = Pace::Free;
                    }
                    if !more {
                        let bound = router.config().default_call_timeout + Duration::from_secs(1);
                        half_closed = Some(Instant::now() + bound);
                    }
                    ended = self.decode(input, !more, outbox).err();
                }
                Wake::Read(Err(stop)) => return stop,
                Wake::Queued(0) | Wake::Wrote(Ok(0) | Err(_)) => return Stop::Closed,
                Wake::Queued(_) => {
                    self.encode_taken(router);
                    if !self.bounced.is_empty() {
                        router.bounce(self.conn, self.bounced.drain(..));
                    }
                }
                Wake::Wrote(Ok(_)) | Wake::Paced => {}
            }
        }
    }

    /// Hands the router the requests decoded so far, up to the first that finds answers holding
    /// the outbox over its limit; the rest wait until the outbox drains, and the peer is not read
    /// from meanwhile.
    fn route(&mut self, outbox: &Outbox, router: &Router) {
        if self.routed.is_empty() || outbox.over_limit() {
            return;
        }
        router.screen(self.conn, &mut self.contracts, &mut self.routed);
        let routed = &mut self.routed;
        let within = || !outbox.over_limit();
        router.handle(
            self.conn,
            std::iter::from_fn(|| within().then(|| routed.pop_front()).flatten()),
        );
    }

    /// For a paced dialect, once the last message is written and its gap has passed (or the peer
    /// has spoken since), takes the codec's next message as the whole of the output.
    fn release_paced(&mut self) {
        let Some(gap) = self.codec.message_gap() else {
            return;
        };
        if !self.out.is_empty() {
            return;
        }
        let now = Instant::now();
        match self.pace {
            Pace::Writing => {
                self.pace = Pace::Until(now + gap);
                return;
            }
            Pace::Until(t) if t > now => return,
            Pace::Until(_) | Pace::Free => {}
        }
        self.pace = if self.codec.next_message(&mut self.out) {
            Pace::Writing
        } else {
            Pace::Free
        };
    }

    /// Decodes the peer's bytes (all that is left of them when `eof`): requests are kept for
    /// [`Link::route`], answers the codec gives by itself go to the outbox. `Err` when the stream
    /// cannot go on (after the requests before the fault are routed).
    fn decode<R: ReadFds>(
        &mut self,
        input: &mut Input<R>,
        eof: bool,
        outbox: &Outbox,
    ) -> Result<(), Stop> {
        let result = self.codec.decode(&mut input.buf, &mut self.decoded);
        if eof && result.is_ok() {
            self.codec.decode_eof(&mut input.buf, &mut self.decoded);
        }
        input.decoded(!self.decoded.is_empty());
        for decoded in self.decoded.drain(..) {
            match decoded {
                Decoded::Route(frame) => self.routed.push_back(frame),
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
        result.map_err(|fatal| Stop::Refused(fatal.code, fatal.message))
    }

    /// Encodes the frames taken from the outbox into the output, which from now on bounds them
    /// instead of the outbox. Events the codec could not carry are counted dropped.
    fn encode_taken(&mut self, router: &Router) {
        let mut bytes = 0;
        for frame in self.taken.drain(..) {
            bytes += held(&frame);
            // Memfd payloads: a dialect peer gets the memfd's bytes.
            let frame = match fds::inline(&frame) {
                Ok(frame) => frame,
                Err(e) => {
                    warn!(conn = self.conn, error = %e, "cannot read a memfd payload; frame dropped");
                    continue;
                }
            };
            self.codec.encode(&frame, &mut self.out, &mut self.bounced);
        }
        self.receiver.release(bytes);
        let dropped = self.codec.take_dropped_events();
        if dropped > 0 {
            debug!(
                conn = self.conn,
                dropped, "events the dialect could not carry"
            );
            router.count_undelivered_events(dropped);
        }
    }

    /// After the connection is detached: writes the output and whatever is left in the outbox,
    /// then closes the socket. Calls the codec bounces now were already answered by the detach.
    async fn flush<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        router: &Router,
    ) -> std::io::Result<()> {
        let gap = self.codec.message_gap();
        loop {
            writer.write_all_buf(&mut self.out).await?;
            if let Some(gap) = gap
                && self.codec.next_message(&mut self.out)
            {
                tokio::time::sleep(gap).await;
                continue;
            }
            if self.receiver.recv_batch(&mut self.taken).await == 0 {
                break;
            }
            self.encode_taken(router);
            self.bounced.clear();
        }
        writer.shutdown().await
    }
}
