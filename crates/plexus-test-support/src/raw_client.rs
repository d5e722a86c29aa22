//! A client that speaks raw frames, for tests that need to send exactly what they mean.

use std::time::Duration;

use bytes::BytesMut;
use plexus_proto::{ErrorCode, Frame, Kind, decode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::WAIT;

/// A client that speaks raw frames.
pub struct RawClient<S> {
    /// The socket.
    pub stream: S,
    pub(crate) buf: BytesMut,
    /// Memfd payloads: descriptors received and not yet given to their frames.
    pub(crate) fds: std::collections::VecDeque<std::os::fd::OwnedFd>,
    /// The connection id from `welcome` (0 before the handshake).
    pub conn_id: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    /// Wraps a connected socket, without a handshake.
    pub fn raw(stream: S) -> RawClient<S> {
        RawClient {
            stream,
            buf: BytesMut::new(),
            fds: Default::default(),
            conn_id: 0,
        }
    }

    /// Wraps a connected socket and says `hello` as `name`; the answer must be `welcome`.
    pub async fn hello(stream: S, name: &str) -> RawClient<S> {
        let mut c = RawClient::raw(stream);
        c.send(Frame::hello(name)).await;
        let welcome = c.recv().await;
        assert_eq!(
            welcome.kind(),
            Kind::Welcome,
            "handshake answered with {welcome:?}"
        );
        c.conn_id = welcome.id();
        c
    }

    /// Sends a frame.
    pub async fn send(&mut self, frame: Frame) {
        self.send_bytes(&frame.to_bytes()).await;
    }

    /// Sends bytes as they are.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next frame; fails the test after [`WAIT`].
    pub async fn recv(&mut self) -> Frame {
        self.try_recv(WAIT)
            .await
            .expect("a frame arrives in time")
            .expect("connection still open")
    }

    /// Reads until the broker closes the connection (failing after [`WAIT`](crate::WAIT) of
    /// silence), checking every frame is an event; returns how many came.
    pub async fn events_until_closed(&mut self) -> u64 {
        let mut received = 0;
        while let Some(frame) = self
            .try_recv(crate::WAIT)
            .await
            .expect("the broker closes the connection")
        {
            assert_eq!(frame.kind(), plexus_proto::Kind::Event);
            received += 1;
        }
        received
    }

    /// The next frame within `wait`: `Err` on timeout, `Ok(None)` when the broker closed.
    pub async fn try_recv(
        &mut self,
        wait: Duration,
    ) -> Result<Option<Frame>, tokio::time::error::Elapsed> {
        tokio::time::timeout(wait, async {
            loop {
                if let Some(f) = decode(&mut self.buf, u32::MAX).expect("broker sends valid frames")
                {
                    return Some(f);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
    }

    /// Sends a request and returns the answer with the same id, which must come next.
    pub async fn request(&mut self, frame: Frame) -> Frame {
        let id = frame.id();
        self.send(frame).await;
        let answer = self.recv().await;
        assert_eq!(answer.id(), id, "answer {answer:?}");
        answer
    }

    /// Registers `name` exclusively; it must succeed.
    pub async fn register(&mut self, id: u64, name: &str) {
        let r = self.request(Frame::register(id, name, false)).await;
        assert_eq!(r.kind(), Kind::Reply, "register {name}: {r:?}");
    }

    /// Joins the queue group `name`; it must succeed.
    pub async fn register_shared(&mut self, id: u64, name: &str) {
        let r = self.request(Frame::register(id, name, true)).await;
        assert_eq!(r.kind(), Kind::Reply, "register shared {name}: {r:?}");
    }

    /// Subscribes to `pattern` as subscription `id`; it must succeed.
    pub async fn subscribe(&mut self, id: u64, pattern: &str) {
        let r = self.request(Frame::subscribe(id, pattern)).await;
        assert_eq!(r.kind(), Kind::Reply, "subscribe {pattern}: {r:?}");
    }

    /// Expects the next frame to be an error with `code` and returns it.
    pub async fn expect_error(&mut self, code: ErrorCode) -> Frame {
        let f = self.recv().await;
        assert_eq!(f.kind(), Kind::Error, "expected {code}, got {f:?}");
        assert_eq!(f.error_code(), code, "message: {}", f.string(0));
        f
    }

    /// Waits until the broker closes the connection.
    pub async fn expect_closed(&mut self) {
        let end = self.try_recv(WAIT).await.expect("broker closes in time");
        assert!(end.is_none(), "expected close, got {end:?}");
    }
}

/// The JSON of a frame's payload.
pub fn json(frame: &Frame) -> serde_json::Value {
    serde_json::from_slice(&frame.payload()).expect("payload is JSON")
}
