//! Test harness: a broker on a temporary socket and TCP port 0, and a raw-frame client.

use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use plexus_broker::{Broker, Config};
use plexus_proto::{ErrorCode, Frame, Kind, decode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A broker running inside the test process.
pub struct TestBroker {
    pub path: PathBuf,
    pub tcp: std::net::SocketAddr,
    /// Every bound TCP address: `tcp` first, then any the config added (ipc-broker's).
    pub tcp_addrs: Vec<std::net::SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        Self::with_config(Config::default()).await
    }

    pub async fn with_config(mut config: Config) -> TestBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bus.sock");
        config.socket = Some(path.clone());
        config.tcp = vec!["127.0.0.1:0".parse().expect("addr")];
        let broker = Broker::bind(config).await.expect("bind");
        let tcp_addrs = broker.tcp_addrs();
        let tcp = tcp_addrs[0];
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            broker
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("broker run");
        });
        TestBroker {
            path,
            tcp,
            tcp_addrs,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    pub async fn client(&self, name: &str) -> RawClient<UnixStream> {
        RawClient::hello(
            UnixStream::connect(&self.path).await.expect("connect"),
            name,
        )
        .await
    }

    pub async fn tcp_client(&self, name: &str) -> RawClient<TcpStream> {
        RawClient::hello(
            TcpStream::connect(self.tcp).await.expect("connect tcp"),
            name,
        )
        .await
    }

    /// Stops the broker and waits until it has finished.
    pub async fn stop(mut self) {
        self.stop_inner().await;
    }

    async fn stop_inner(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("broker stops in time")
                .expect("broker task");
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A client that speaks raw frames.
pub struct RawClient<S> {
    pub stream: S,
    buf: BytesMut,
    pub conn_id: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    /// Connects without a handshake.
    pub fn raw(stream: S) -> RawClient<S> {
        RawClient {
            stream,
            buf: BytesMut::new(),
            conn_id: 0,
        }
    }

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

    pub async fn send(&mut self, frame: Frame) {
        self.send_bytes(&frame.to_bytes()).await;
    }

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

    pub async fn register(&mut self, id: u64, name: &str) {
        let r = self.request(Frame::register(id, name, false)).await;
        assert_eq!(r.kind(), Kind::Reply, "register {name}: {r:?}");
    }

    pub async fn register_shared(&mut self, id: u64, name: &str) {
        let r = self.request(Frame::register(id, name, true)).await;
        assert_eq!(r.kind(), Kind::Reply, "register shared {name}: {r:?}");
    }

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

/// JSON of a payload.
pub fn json(frame: &Frame) -> serde_json::Value {
    serde_json::from_slice(&frame.payload()).expect("payload is JSON")
}

/// Whether this run is CI, where a missing tool fails a test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports a tool a test needs and cannot find: fails in CI, skips (with the reason) locally.
pub fn missing(what: &str) {
    assert!(!in_ci(), "{what} (needed in CI)");
    eprintln!("skipped: {what}");
}

/// A Python that can import `module`: `PLEXUS_PYTHON` (required in CI), else locally the
/// workspace's `.venv` or `python3`. `None` (after a printed reason) to skip.
pub fn python_with(module: &str) -> Option<String> {
    let imports = |python: &str| {
        std::process::Command::new(python)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if let Ok(python) = std::env::var("PLEXUS_PYTHON") {
        assert!(
            imports(&python),
            "PLEXUS_PYTHON={python} cannot import {module}"
        );
        return Some(python);
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python");
    if !in_ci() {
        for python in [venv, "python3"] {
            if imports(python) {
                return Some(python.to_owned());
            }
        }
    }
    missing(&format!(
        "no Python with the `{module}` package: set PLEXUS_PYTHON (`python3 -m venv .venv && .venv/bin/pip install {module}`)"
    ));
    None
}
