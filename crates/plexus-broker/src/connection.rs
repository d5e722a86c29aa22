//! One connection: telling its dialect from the first bytes, the handshake, a reader loop that
//! decodes frames and hands them to the router, and a writer task that drains the outbox.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use plexus_proto::dialect::{Decoded, Dialect, DialectCodec};
use plexus_proto::{DecodeError, ErrorCode, Frame, Kind, decode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::outbox::{FrameEncoder, NativeEncoder, Outbox, outbox};
use crate::peer::PeerInfo;
use crate::router::{ConnId, Router};

/// Bytes the reader asks the socket for at least, per read.
const READ_CHUNK: usize = 64 * 1024;

/// Why a reader stopped.
enum Stop {
    /// The peer closed, or the broker is shutting down.
    Closed,
    /// The peer sent something that ends the connection.
    Refused(ErrorCode, String),
}

fn no_hello() -> Stop {
    Stop::Refused(
        ErrorCode::BadFrame,
        "no hello frame within the handshake timeout".into(),
    )
}

/// Serves one accepted connection until it closes or the broker shuts down.
pub async fn serve<R, W>(
    reader: R,
    writer: W,
    mut peer: PeerInfo,
    router: Arc<Router>,
    shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let conn = router.next_conn_id();
    let (outbox, receiver) = outbox(router.config().outbox_limit);
    let max_frame = router.config().max_frame;
    let mut input = Input {
        reader,
        buf: BytesMut::with_capacity(READ_CHUNK),
        max_frame,
    };
    let deadline = Instant::now() + router.config().handshake_timeout;
    let detected = tokio::time::timeout_at(deadline, input.detect())
        .await
        .unwrap_or_else(|_| Err(no_hello()));
    let dialect = match &detected {
        Ok(d) => d
            .codec(max_frame, router.config().max_pending_per_connection)
            .map(|codec| (*d, codec)),
        Err(_) => None,
    };

    let (stop, writer_task) = match dialect {
        None => {
            let writer_task = tokio::spawn(receiver.write_all_to(writer, NativeEncoder));
            let stop = match detected {
                Err(stop) => stop,
                Ok(_) => native(conn, &mut input, peer, &router, &outbox, shutdown, deadline).await,
            };
            (stop, writer_task)
        }
        Some((dialect, codec)) => {
            let shared = Arc::new(DialectState {
                codec: Mutex::new(codec),
                idle: Notify::new(),
                writer_done: AtomicBool::new(false),
            });
            let encoder = DialectEncoder {
                state: shared.clone(),
                router: router.clone(),
                conn,
                bounce: Vec::new(),
            };
            let done = shared.clone();
            let writer_task = tokio::spawn(async move {
                let result = receiver.write_all_to(writer, encoder).await;
                done.writer_done.store(true, Ordering::Relaxed);
                done.idle.notify_one();
                result
            });
            peer.client = dialect.client_name().to_owned();
            info!(conn, dialect = dialect.client_name(), pid = ?peer.pid, uid = ?peer.uid, transport = peer.transport, addr = ?peer.addr, "connection opened");
            router.attach(conn, peer, outbox.clone());
            let stop = speak_dialect(conn, &mut input, &router, &outbox, &shared, shutdown).await;
            router.detach(conn);
            (stop, writer_task)
        }
    };
    if let Stop::Refused(code, message) = &stop {
        info!(conn, code = code.name(), %message, "connection refused");
        outbox.push_always(Frame::error(0, *code, message, b""));
    }
    drop(outbox);
    let grace = router.config().shutdown_grace;
    match tokio::time::timeout(grace, writer_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => debug!(conn, error = %e, "writer stopped"),
        Ok(Err(e)) => debug!(conn, error = %e, "writer task failed"),
        Err(_) => debug!(conn, "writer did not drain in time"),
    }
    info!(conn, "connection closed");
}

/// A native session: `hello` before `deadline`, then frames until the connection ends.
async fn native<R: AsyncRead + Unpin>(
    conn: ConnId,
    input: &mut Input<R>,
    mut peer: PeerInfo,
    router: &Router,
    outbox: &Outbox,
    shutdown: watch::Receiver<bool>,
    deadline: Instant,
) -> Stop {
    let hello = match tokio::time::timeout_at(deadline, input.next()).await {
        Err(_) => return no_hello(),
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
    router.attach(conn, peer, outbox.clone());
    let stop = route_frames(conn, input, router, shutdown).await;
    router.detach(conn);
    stop
}

/// Hands every frame to the router, a read's worth at a time, until the connection ends.
async fn route_frames<R: AsyncRead + Unpin>(
    conn: ConnId,
    input: &mut Input<R>,
    router: &Router,
    mut shutdown: watch::Receiver<bool>,
) -> Stop {
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
            _ = shutdown.changed() => return Stop::Closed,
            r = input.fill() => r,
        };
        if let Err(stop) = result {
            return stop;
        }
    }
}

/// A dialect connection's codec, shared by its reader and its writer.
struct DialectState {
    codec: Mutex<Box<dyn DialectCodec>>,
    /// Signalled after each written batch, and when the writer ends.
    idle: Notify,
    writer_done: AtomicBool,
}

impl DialectState {
    fn codec(&self) -> MutexGuard<'_, Box<dyn DialectCodec>> {
        self.codec
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Encodes an outbox's frames in a dialect; a call the dialect cannot carry is answered through
/// the router as if the peer had refused it.
struct DialectEncoder {
    state: Arc<DialectState>,
    router: Arc<Router>,
    conn: ConnId,
    bounce: Vec<Frame>,
}

impl FrameEncoder for DialectEncoder {
    fn encode(&mut self, frame: &Frame, buf: &mut BytesMut) {
        self.state.codec().encode(frame, buf, &mut self.bounce);
    }

    fn batch_written(&mut self) {
        if !self.bounce.is_empty() {
            self.router.handle(self.conn, self.bounce.drain(..));
        }
        self.state.idle.notify_one();
    }
}

/// Decodes a dialect connection's bytes into frames for the router until it ends. When the peer
/// closes its side, its open requests are still answered (for at most the default call timeout
/// and a second) before the connection is dropped.
async fn speak_dialect<R: AsyncRead + Unpin>(
    conn: ConnId,
    input: &mut Input<R>,
    router: &Router,
    outbox: &Outbox,
    state: &DialectState,
    mut shutdown: watch::Receiver<bool>,
) -> Stop {
    let mut decoded = Vec::new();
    let mut batch = Vec::new();
    let mut eof = false;
    loop {
        let fatal = {
            let mut codec = state.codec();
            let result = codec.decode(&mut input.buf, &mut decoded);
            if eof && result.is_ok() {
                codec.decode_eof(&mut input.buf, &mut decoded);
            }
            result.err()
        };
        for d in decoded.drain(..) {
            match d {
                Decoded::Route(frame) => batch.push(frame),
                Decoded::Answer(frame) => {
                    debug!(
                        conn,
                        code = frame.error_code().name(),
                        message = frame.string(0),
                        "answered by the dialect"
                    );
                    outbox.push_always(frame);
                }
                Decoded::Dropped(why) => debug!(conn, %why, "message dropped"),
            }
        }
        if !batch.is_empty() {
            router.handle(conn, batch.drain(..));
        }
        if let Some(fatal) = fatal {
            return Stop::Refused(fatal.code, fatal.message);
        }
        if eof {
            let bound = router.config().default_call_timeout + Duration::from_secs(1);
            let _ = tokio::time::timeout(bound, answered(state, &mut shutdown)).await;
            return Stop::Closed;
        }
        let read = tokio::select! {
            _ = shutdown.changed() => return Stop::Closed,
            r = input.read_some() => r,
        };
        match read {
            Ok(true) => {}
            Ok(false) => eof = true,
            Err(()) => return Stop::Closed,
        }
    }
}

/// Resolves once the peer's open requests are answered, its writer ended, or the broker stops.
async fn answered(state: &DialectState, shutdown: &mut watch::Receiver<bool>) {
    loop {
        if state.codec().outstanding() == 0 || state.writer_done.load(Ordering::Relaxed) {
            return;
        }
        tokio::select! {
            _ = state.idle.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The read half of a socket with its buffer.
struct Input<R> {
    reader: R,
    buf: BytesMut,
    max_frame: u32,
}

impl<R: AsyncRead + Unpin> Input<R> {
    /// Reads once from the socket into the buffer: `Ok(false)` at the end of the stream.
    async fn read_some(&mut self) -> Result<bool, ()> {
        self.buf.reserve(READ_CHUNK);
        match self.reader.read_buf(&mut self.buf).await {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => {
                debug!(error = %e, "read failed");
                Err(())
            }
        }
    }

    /// Reads once; the end of the stream stops the connection.
    async fn fill(&mut self) -> Result<(), Stop> {
        match self.read_some().await {
            Ok(true) => Ok(()),
            Ok(false) if self.buf.is_empty() => Err(Stop::Closed),
            Ok(false) => Err(Stop::Refused(
                ErrorCode::BadFrame,
                "connection closed in the middle of a frame".into(),
            )),
            Err(()) => Err(Stop::Closed),
        }
    }

    /// Reads until the first bytes tell the dialect.
    async fn detect(&mut self) -> Result<Dialect, Stop> {
        loop {
            if let Some(dialect) = Dialect::detect(&self.buf) {
                return Ok(dialect);
            }
            self.fill().await?;
        }
    }

    /// Moves every complete frame in the buffer to `out`.
    fn drain_into(&mut self, out: &mut Vec<Frame>) -> Result<(), Stop> {
        while let Some(frame) = decode(&mut self.buf, self.max_frame).map_err(refusal)? {
            out.push(frame);
        }
        Ok(())
    }

    /// The next frame, reading as needed.
    async fn next(&mut self) -> Result<Frame, Stop> {
        loop {
            if let Some(frame) = decode(&mut self.buf, self.max_frame).map_err(refusal)? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }
}

fn refusal(e: DecodeError) -> Stop {
    Stop::Refused(e.code(), e.to_string())
}
