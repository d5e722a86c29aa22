//! ProcBridge on the bus socket: hand-built packets, and the real PyPI `procbridge` client.

use std::time::Duration;

use bytes::BytesMut;
use plexus_broker::Config;
use plexus_proto::dialect::procbridge::{Packet, Status, put_packet, take_packet};
use plexus_proto::{Frame, Kind};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use plexus_test_support::{RawClient, TestBroker, WAIT, json, python_with};

/// A ProcBridge client speaking hand-built packets.
struct PbClient<S> {
    stream: S,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> PbClient<S> {
    fn new(stream: S) -> Self {
        PbClient {
            stream,
            buf: BytesMut::new(),
        }
    }

    fn packet(status: Status, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        put_packet(&mut b, status, body);
        b
    }

    async fn send(&mut self, body: &str) {
        let p = Self::packet(Status::Request, body.as_bytes());
        self.stream.write_all(&p).await.expect("write");
    }

    /// The next packet, or `None` when the broker closed.
    async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(p) = take_packet(&mut self.buf, u32::MAX).expect("valid packets") {
                    return Some(p);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("a packet or close in time")
    }

    /// The next response: (status, body JSON).
    async fn response(&mut self) -> (u8, Value) {
        let p = self.recv().await.expect("a response");
        assert_eq!(p.version, [1, 1]);
        (
            p.status,
            serde_json::from_slice(&p.body).expect("JSON body"),
        )
    }
}

/// Answers `n` calls with `{"sum": a + b}`, in arrival order.
async fn serve_sums<S: AsyncRead + AsyncWrite + Unpin>(worker: &mut RawClient<S>, n: usize) {
    for _ in 0..n {
        let call = worker.recv().await;
        assert_eq!(call.kind(), Kind::Call);
        let p = json(&call);
        let sum = p["a"].as_i64().unwrap_or(0) + p["b"].as_i64().unwrap_or(0);
        let body = json!({ "sum": sum }).to_string();
        worker.send(Frame::reply(call.id(), body.as_bytes())).await;
    }
}

#[tokio::test]
async fn a_request_is_a_call_and_errors_name_their_code() {
    let broker = TestBroker::start().await;
    let mut worker = broker.raw_client("calc").await;
    worker.register(1, "org.x.math").await;
    let mut pb = PbClient::new(UnixStream::connect(&broker.path).await.expect("connect"));

    pb.send(r#"{"method": "org.x.math.add", "payload": {"a": 1, "b": 2}}"#)
        .await;
    let call = worker.recv().await;
    assert_eq!(
        (call.string(0), call.string(1)),
        ("org.x.math", "add"),
        "split at the last dot"
    );
    assert_eq!(&call.payload()[..], br#"{"a": 1, "b": 2}"#);
    worker.send(Frame::reply(call.id(), br#"{"sum":3}"#)).await;
    assert_eq!(
        pb.response().await,
        (Status::GoodResponse as u8, json!({"payload": {"sum": 3}}))
    );

    pb.send(r#"{"method": "nope.add", "payload": 1}"#).await;
    assert_eq!(
        pb.response().await,
        (
            Status::BadResponse as u8,
            json!({"message":"no_such_object: no object named 'nope' is registered on the bus\ndata: {\"object\":\"nope\"}"})
        ),
        "the error's data follows its message"
    );
    for (body, code) in [
        ("not json", "bad_frame: "),
        (r#"{"method": "nodot"}"#, "invalid_params: "),
        (r#"{"payload": 1}"#, "invalid_params: "),
    ] {
        pb.send(body).await;
        let (status, answer) = pb.response().await;
        assert_eq!(status, Status::BadResponse as u8, "{body}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(code), "{body}: {message}");
    }

    pb.send(r#"{"method": "org.x.math.add", "payload": {"a": 40, "b": 2}}"#)
        .await;
    serve_sums(&mut worker, 1).await;
    assert_eq!(pb.response().await.1, json!({"payload": {"sum": 42}}));

    pb.send(r#"{"method": "plexus.ping"}"#).await;
    assert_eq!(pb.response().await.1["payload"]["pong"], true);
}

#[tokio::test]
async fn answers_keep_request_order_over_tcp_with_byte_by_byte_writes() {
    let broker = TestBroker::start().await;
    let mut worker = broker.raw_client("calc").await;
    worker.register(1, "math").await;
    let mut pb = PbClient::new(TcpStream::connect(broker.tcp).await.expect("connect"));
    let mut wire = PbClient::<TcpStream>::packet(Status::Request, br#"{"method":"math.first"}"#);
    wire.extend_from_slice(&PbClient::<TcpStream>::packet(
        Status::Request,
        br#"{"method":"math.second"}"#,
    ));
    for byte in wire.iter() {
        pb.stream.write_all(&[*byte]).await.expect("write");
        pb.stream.flush().await.expect("flush");
    }
    let first = worker.recv().await;
    let second = worker.recv().await;
    assert_eq!((first.string(1), second.string(1)), ("first", "second"));
    worker.send(Frame::reply(second.id(), b"2")).await;
    worker.send(Frame::reply(first.id(), b"1")).await;
    assert_eq!(pb.response().await.1, json!({"payload": 1}));
    assert_eq!(pb.response().await.1, json!({"payload": 2}));
}

#[tokio::test]
async fn framing_errors_are_answered_then_the_connection_closes() {
    let broker = TestBroker::with_config(Config {
        max_frame: 4096,
        ..Config::default()
    })
    .await;
    let mut pb = PbClient::new(UnixStream::connect(&broker.path).await.expect("connect"));
    pb.stream
        .write_all(b"pb\x02\x00\x00\x00\x00\x02\x00\x00\x00{}")
        .await
        .expect("write");
    let (status, body) = pb.response().await;
    assert_eq!(status, Status::BadResponse as u8);
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("unsupported_version: "), "{message}");
    assert!(pb.recv().await.is_none(), "closed after the error");

    let mut pb = PbClient::new(UnixStream::connect(&broker.path).await.expect("connect"));
    pb.stream
        .write_all(b"pb\x01\x01\x00\x00\x00\x00\x00\x01\x00")
        .await
        .expect("write");
    let message = pb.response().await.1["message"].to_string();
    assert!(message.contains("frame_too_large"), "{message}");
    assert!(pb.recv().await.is_none(), "closed after the error");
}

#[tokio::test]
async fn a_client_that_closes_its_sending_side_still_gets_its_answer() {
    let broker = TestBroker::start().await;
    let mut worker = broker.raw_client("calc").await;
    worker.register(1, "math").await;
    let mut pb = PbClient::new(UnixStream::connect(&broker.path).await.expect("connect"));
    pb.send(r#"{"method":"math.add","payload":{"a":2,"b":3}}"#)
        .await;
    pb.stream.shutdown().await.expect("shutdown write");
    serve_sums(&mut worker, 1).await;
    assert_eq!(pb.response().await.1, json!({"payload": {"sum": 5}}));
    assert!(pb.recv().await.is_none(), "then the broker closes");
}

/// The PyPI client's own requests: over the Unix socket and TCP, and errors it raises, whose
/// data it reads back from the message.
const PYPI_CLIENT: &str = r#"
import json, sys, procbridge
unix = procbridge.Client.from_unix(sys.argv[1])
print(json.dumps(unix.request("org.x.math.add", {"a": 10, "b": 32})))
tcp = procbridge.Client("127.0.0.1", int(sys.argv[2]))
print(json.dumps(tcp.request("org.x.math.add", {"a": 1, "b": 2})))
print(json.dumps(tcp.request("plexus.ping")["pong"]))
for method, payload in [("nope.add", {}), ("plexus.wait_for", {"names": ["never"], "timeout_ms": 20})]:
    try:
        unix.request(method, payload)
        print("no error")
    except procbridge.ServerError as e:
        text, _, data = e.message.rpartition("\ndata: ")
        print("error: " + text)
        print("data: " + json.dumps(json.loads(data)))
"#;

#[tokio::test]
async fn the_pypi_procbridge_client_calls_bus_objects() {
    let Some(python) = python_with("procbridge") else {
        return;
    };
    let broker = TestBroker::start().await;
    let mut worker = broker.raw_client("calc").await;
    worker.register(1, "org.x.math").await;
    let serving = tokio::spawn(async move {
        serve_sums(&mut worker, 2).await;
        worker
    });
    let port = broker.tcp.port().to_string();
    let path = broker.path.display().to_string();
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(&python)
            .args(["-c", PYPI_CLIENT, &path, &port])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python finishes in time")
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            r#"{"sum": 42}"#,
            r#"{"sum": 3}"#,
            "true",
            "error: no_such_object: no object named 'nope' is registered on the bus",
            r#"data: {"object": "nope"}"#,
            r#"error: timeout: still not registered when the wait ended: ["never"]"#,
            r#"data: {"missing": ["never"]}"#,
        ]
    );
    tokio::time::timeout(Duration::from_secs(1), serving)
        .await
        .expect("both calls served")
        .expect("worker task");
}
