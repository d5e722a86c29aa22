//! For the dashboard tests: a real `plexus broker --http` process, the calculator example
//! worker, callers that load it, and plain HTTP requests to the broker's listener.
#![allow(dead_code)] // each test target uses a different part

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long anything may take before the test fails as hung.
pub const WAIT: Duration = Duration::from_secs(20);

/// A child process killed and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `plexus broker` serving the dashboard, on a socket in its own directory.
pub struct DashBroker {
    /// The broker process.
    pub child: Killed,
    /// Its bus address, `unix:PATH`.
    pub bus: String,
    /// Its HTTP listener.
    pub http: SocketAddr,
    /// Its log (stderr).
    pub log: PathBuf,
    dir: tempfile::TempDir,
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl DashBroker {
    /// Starts `plexus broker --socket DIR/bus.sock --http 127.0.0.1:PORT EXTRA...` and waits
    /// until both listen.
    pub fn start(extra: &[&str]) -> DashBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("bus.sock");
        let log = dir.path().join("broker.log");
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let child = Command::new(env!("CARGO_BIN_EXE_plexus"))
            .args(["broker", "--socket"])
            .arg(&socket)
            .args(["--http", &http.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn broker");
        let broker = DashBroker {
            child: Killed(child),
            bus: format!("unix:{}", socket.display()),
            http,
            log,
            dir,
        };
        let deadline = Instant::now() + WAIT;
        while !(socket.exists() && TcpStream::connect(http).is_ok()) {
            assert!(
                Instant::now() < deadline,
                "the broker listens in time: {}",
                std::fs::read_to_string(&broker.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    /// `GET path`: the status and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        get(self.http, path, "127.0.0.1")
    }

    /// `GET path`, which must answer 200 with JSON.
    pub fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// The directory the socket and the log are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// `GET path` on `addr` with `Host: host`: the status and the body (the server closes after one
/// response).
pub fn get(addr: SocketAddr, path: &str, host: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect http");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, body.to_owned())
}

/// The `plexus-bus-client` example `name`, built on first use.
pub fn example(name: &str) -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_plexus"));
    let profile_dir = bin.parent().expect("target profile dir");
    let path = profile_dir.join("examples").join(name);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let target_dir = profile_dir.parent().expect("target dir");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "plexus-bus-client",
            "--example",
            name,
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .expect("run cargo build for the example");
    assert!(status.success(), "building example {name}");
    assert!(path.exists(), "{} built", path.display());
    path
}

/// The calculator example worker (`math` with `add` and `mul`) on `bus`, serving once this
/// returns.
pub fn calculator_worker(broker: &DashBroker) -> Killed {
    let child = Command::new(example("calculator_worker"))
        .env("PLEXUS_BUS", &broker.bus)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn calculator_worker");
    let mut worker = Killed(child);
    let mut line = [0u8; 1];
    let mut out = worker.0.stdout.take().expect("stdout");
    // It prints "serving math on ..." once it serves.
    let mut seen = Vec::new();
    while !seen.ends_with(b"\n") {
        let n = out.read(&mut line).expect("worker output");
        assert!(n == 1, "calculator_worker exited before serving");
        seen.push(line[0]);
    }
    worker
}

/// A client on `bus` named `name`.
pub async fn client(bus: &str, name: &str) -> plexus_client::Client {
    plexus_client::Client::builder()
        .address(bus)
        .name(name)
        .connect()
        .await
        .expect("connect a client")
}

/// Makes `n` `math.add` calls one after another; the duration of each.
pub async fn add_calls(client: &plexus_client::Client, n: usize) -> Vec<Duration> {
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let sum: Value = client
            .call("math", "add", &json!({ "a": i, "b": 1 }))
            .await
            .expect("math.add answers");
        took.push(started.elapsed());
        assert_eq!(sum, json!({ "sum": i + 1 }));
    }
    took
}

/// The median and 99th percentile of `durations`, in microseconds.
pub fn p50_p99_us(durations: &mut [Duration]) -> (u128, u128) {
    durations.sort();
    let at = |q: f64| {
        let i = ((durations.len() as f64 - 1.0) * q).round() as usize;
        durations.get(i).map_or(0, |d| d.as_micros())
    };
    (at(0.5), at(0.99))
}
