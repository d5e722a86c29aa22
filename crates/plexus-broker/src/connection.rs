//! One connection: the handshake, a reader loop that decodes frames and hands them to the router,
//! and a writer task that drains the connection's outbox to the socket.

use std::sync::Arc;

use bytes::BytesMut;
use plexus_proto::{DecodeError, ErrorCode, Frame, Kind, decode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::watch;
use tracing::{debug, info};

use crate::outbox::outbox;
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
    let writer_task = tokio::spawn(receiver.write_all_to(writer));
    let mut reader = FrameReader {
        reader,
        buf: BytesMut::with_capacity(READ_CHUNK),
        max_frame: router.config().max_frame,
    };

    let stop = match handshake(&mut reader, &router).await {
        Ok(hello) => {
            peer.client = hello.string(0).to_owned();
            info!(conn, client = %peer.client, pid = ?peer.pid, uid = ?peer.uid, transport = peer.transport, addr = ?peer.addr, "connection opened");
            router.attach(conn, peer, outbox.clone());
            let stop = route_frames(conn, &mut reader, &router, shutdown).await;
            router.detach(conn);
            stop
        }
        Err(stop) => stop,
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

/// Waits for the `hello` frame.
async fn handshake<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    router: &Router,
) -> Result<Frame, Stop> {
    let first = tokio::time::timeout(router.config().handshake_timeout, reader.next()).await;
    match first {
        Err(_) => Err(Stop::Refused(
            ErrorCode::BadFrame,
            "no hello frame within the handshake timeout".into(),
        )),
        Ok(Err(stop)) => Err(stop),
        Ok(Ok(hello)) if hello.kind() == Kind::Hello => Ok(hello),
        Ok(Ok(other)) => Err(Stop::Refused(
            ErrorCode::BadFrame,
            format!("the first frame must be hello, not {}", other.kind().name()),
        )),
    }
}

/// Hands every frame to the router, a read's worth at a time, until the connection ends.
async fn route_frames<R: AsyncRead + Unpin>(
    conn: ConnId,
    reader: &mut FrameReader<R>,
    router: &Router,
    mut shutdown: watch::Receiver<bool>,
) -> Stop {
    let mut batch = Vec::new();
    loop {
        let result = tokio::select! {
            _ = shutdown.changed() => return Stop::Closed,
            r = reader.fill() => r,
        };
        let stop = match result {
            Ok(()) => reader.drain_into(&mut batch).err(),
            Err(stop) => Some(stop),
        };
        if !batch.is_empty() {
            router.handle(conn, batch.drain(..));
        }
        if let Some(stop) = stop {
            return stop;
        }
    }
}

/// The read half of a socket with its buffer.
struct FrameReader<R> {
    reader: R,
    buf: BytesMut,
    max_frame: u32,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads once from the socket into the buffer.
    async fn fill(&mut self) -> Result<(), Stop> {
        self.buf.reserve(READ_CHUNK);
        match self.reader.read_buf(&mut self.buf).await {
            Ok(0) if self.buf.is_empty() => Err(Stop::Closed),
            Ok(0) => Err(Stop::Refused(
                ErrorCode::BadFrame,
                "connection closed in the middle of a frame".into(),
            )),
            Ok(_) => Ok(()),
            Err(e) => {
                debug!(error = %e, "read failed");
                Err(Stop::Closed)
            }
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
