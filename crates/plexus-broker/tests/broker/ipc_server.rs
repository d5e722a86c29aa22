//! ipc-server on its TCP listener: a test client that writes bare JSON objects and, like
//! ipc-server's own `ipc_client`, takes whatever one read returns as one message (reading on
//! while reads fill its 4,096-byte buffer) — so two messages arriving together fail the test.

use std::net::SocketAddr;
use std::time::Duration;

use plexus_broker::Config;
use plexus_proto::{Frame, Kind};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use plexus_test_support::{TestBroker, WAIT, json};

/// An ipc-server client speaking hand-built messages.
struct IpcServerClient {
    stream: TcpStream,
}

impl IpcServerClient {
    async fn connect(addr: SocketAddr) -> IpcServerClient {
        IpcServerClient {
            stream: TcpStream::connect(addr).await.expect("connect"),
        }
    }

    async fn send(&mut self, msg: Value) {
        self.stream
            .write_all(msg.to_string().as_bytes())
            .await
            .expect("write");
    }

    /// One message, read as ipc-server's client reads it: the bytes of one read, and of more
    /// reads while each fills the 4,096-byte buffer. `None` when the broker closed.
    async fn recv_message(&mut self) -> Option<Value> {
        let mut data = Vec::new();
        tokio::time::timeout(WAIT, async {
            loop {
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).await.expect("read");
                data.extend_from_slice(&chunk[..n]);
                if n < chunk.len() {
                    break;
                }
            }
        })
        .await
        .expect("a message in time");
        if data.is_empty() {
            return None;
        }
        Some(serde_json::from_slice(&data).unwrap_or_else(|e| {
            panic!(
                "one read is one JSON message ({e}): {}",
                String::from_utf8_lossy(&data)
            )
        }))
    }

    async fn recv(&mut self) -> Value {
        self.recv_message().await.expect("connection open")
    }

    async fn request(&mut self, msg: Value) -> Value {
        self.send(msg).await;
        self.recv().await
    }

    /// Nothing arrives for a while.
    async fn silent(&mut self) {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(150), self.stream.read(&mut byte));
        assert!(read.await.is_err(), "nothing is sent");
    }
}

async fn broker_with(config: Config) -> (TestBroker, SocketAddr) {
    let config = Config {
        ipc_server_compat: Some("127.0.0.1:0".parse().expect("addr")),
        ..config
    };
    let broker = TestBroker::with_config(config).await;
    let addr = broker.ipc_server.expect("the ipc-server listener");
    (broker, addr)
}

fn error_text(msg: &Value) -> &str {
    msg["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn ipc_server_programs_register_list_and_call_each_other_and_native_peers() {
    let (broker, addr) = broker_with(Config::default()).await;
    let mut worker = IpcServerClient::connect(addr).await;
    for name in ["mango", "apple"] {
        assert_eq!(
            worker.request(json!({"reg_object": name})).await,
            json!({"success":"OK"})
        );
    }
    let mut caller = IpcServerClient::connect(addr).await;
    assert_eq!(
        caller.request(json!({"list":["mango","apple"]})).await,
        json!({"list":["mango","apple"]})
    );
    assert_eq!(
        caller.request(json!({"list":["mango","nope"]})).await,
        json!({"list":[]})
    );
    let taken = caller.request(json!({"reg_object":"mango"})).await;
    assert!(error_text(&taken).starts_with("name_taken: "), "{taken}");

    caller
        .send(json!({"object":"mango","method":"login","param":{"provider":"microsoft"}}))
        .await;
    assert_eq!(
        worker.recv().await,
        json!({"object":"mango","method":"login","param":{"provider":"microsoft"}})
    );
    worker.send(json!({"response":"logged in"})).await;
    assert_eq!(caller.recv().await, json!({"response":"logged in"}));

    caller.send(json!({"object":"apple","method":"peel"})).await;
    assert_eq!(
        worker.recv().await,
        json!({"object":"apple","method":"peel"})
    );
    worker.send(json!({"error":"exception happened"})).await;
    let failed = caller.recv().await;
    assert_eq!(failed, json!({"error":"internal: exception happened"}));

    let missing = caller.request(json!({"object":"nope","method":"x"})).await;
    assert!(
        error_text(&missing).starts_with("no_such_object: "),
        "{missing}"
    );

    // A native caller reaches the ipc-server object; the ipc-server caller reaches a native one.
    let mut native = broker.raw_client("native").await;
    native
        .send(Frame::call(1, "mango", "ripe", 0, br#"{"days":3}"#))
        .await;
    assert_eq!(
        worker.recv().await,
        json!({"object":"mango","method":"ripe","param":{"days":3}})
    );
    worker.send(json!({"response":{"ripe":true}})).await;
    let answer = native.recv().await;
    assert_eq!((answer.kind(), answer.id()), (Kind::Reply, 1));
    assert_eq!(json(&answer), json!({"ripe":true}));

    native.register(2, "org.x.math").await;
    caller
        .send(json!({"object":"org.x.math","method":"add","param":[1,2]}))
        .await;
    let call = native.recv().await;
    assert_eq!((call.string(0), call.string(1)), ("org.x.math", "add"));
    native.send(Frame::reply(call.id(), b"3")).await;
    assert_eq!(caller.recv().await, json!({"response":3}));
}

#[tokio::test]
async fn a_worker_reads_queued_calls_one_per_read() {
    let (_broker, addr) = broker_with(Config::default()).await;
    let mut worker = IpcServerClient::connect(addr).await;
    worker.request(json!({"reg_object":"slow"})).await;
    let mut callers = Vec::new();
    for n in 0..3 {
        let mut c = IpcServerClient::connect(addr).await;
        c.send(json!({"object":"slow","method":"work","param":n}))
            .await;
        callers.push(c);
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        let call = worker.recv().await;
        let n = call["param"].as_i64().expect("a number");
        worker.silent().await;
        worker.send(json!({"response": n * 10})).await;
        seen.push(n);
    }
    seen.sort_unstable();
    assert_eq!(seen, vec![0, 1, 2]);
    for (n, c) in callers.iter_mut().enumerate() {
        assert_eq!(c.recv().await, json!({"response": n * 10}));
    }
}

#[tokio::test]
async fn calls_to_a_silent_or_vanished_worker_are_answered() {
    let config = Config {
        default_call_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let (_broker, addr) = broker_with(config).await;
    let mut worker = IpcServerClient::connect(addr).await;
    worker.request(json!({"reg_object":"sleepy"})).await;
    let mut caller = IpcServerClient::connect(addr).await;
    let late = caller
        .request(json!({"object":"sleepy","method":"x"}))
        .await;
    assert!(error_text(&late).starts_with("timeout: "), "{late}");
    worker.recv().await;
    drop(worker);
    caller.send(json!({"object":"sleepy","method":"y"})).await;
    let gone = caller.recv().await;
    let text = error_text(&gone);
    assert!(
        text.starts_with("worker_gone: ") || text.starts_with("no_such_object: "),
        "{gone}"
    );
}

#[tokio::test]
async fn events_cross_between_ipc_server_and_native_peers_one_per_read() {
    let (broker, addr) = broker_with(Config::default()).await;
    let mut listener = IpcServerClient::connect(addr).await;
    listener.send(json!({"event_name":"weather"})).await;
    listener.silent().await;
    let mut native = broker.raw_client("native").await;
    native.subscribe(1, "weather").await;

    let mut sender = IpcServerClient::connect(addr).await;
    for t in [20, 21, 22] {
        sender
            .send(json!({"event":"weather","result":{"t":t}}))
            .await;
    }
    for t in [20, 21, 22] {
        assert_eq!(
            listener.recv().await,
            json!({"event":"weather","result":{"t":t}})
        );
        let event = native.recv().await;
        assert_eq!((event.kind(), event.string(0)), (Kind::Event, "weather"));
        assert_eq!(json(&event), json!({"t":t}));
    }
    sender.silent().await;

    native
        .send(Frame::publish(0, "weather", br#"{"t":9}"#, false))
        .await;
    assert_eq!(
        listener.recv().await,
        json!({"event":"weather","result":{"t":9}})
    );
}

#[tokio::test]
async fn bytes_that_are_not_objects_close_the_connection_with_an_error() {
    let (_broker, addr) = broker_with(Config::default()).await;
    let mut client = IpcServerClient::connect(addr).await;
    let odd = client.request(json!({"hello":1})).await;
    assert!(error_text(&odd).starts_with("bad_frame: "), "{odd}");
    client.stream.write_all(b"[1,2]").await.expect("write");
    let fatal = client.recv().await;
    assert!(error_text(&fatal).starts_with("bad_frame: "), "{fatal}");
    assert_eq!(client.recv_message().await, None, "closed");
}
