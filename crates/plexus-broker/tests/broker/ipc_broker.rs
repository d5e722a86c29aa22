//! ipc-broker compatibility with the real `ipc-broker` crate: its `WorkerBuilder` and `IPCClient`
//! (ipc-broker's calculator worker and client) against plexus on ipc-broker's socket path, native peers on
//! both sides, publish/subscribe, and plexus' guarantees (errors instead of hangs, no hijacking).
//!
//! The crate's programs connect to the fixed path `/tmp/ipc_broker.sock` (or TCP through the
//! process-wide `BROKER_ADDR`), so one test function runs every scenario in sequence while holding
//! an exclusive lock on `/tmp/ipc_broker.sock.lock`; other test runs on the machine wait for it.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use ipc_broker::client::IPCClient;
use ipc_broker::worker::{SharedObject, WorkerBuilder};
use plexus_broker::{Config, IPC_BROKER_SOCKET};
use plexus_proto::dialect::ipc_broker::{put_packet, take_packet};
use plexus_proto::{Frame, Kind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use plexus_test_support::{RawClient, TestBroker, WAIT, json};

/// ipc-broker's calculator worker object.
#[derive(Deserialize, Serialize)]
struct Args {
    a: i32,
    b: i32,
}

struct Calculator;

#[async_trait]
impl SharedObject for Calculator {
    async fn call(&self, method: &str, args: &Value) -> Value {
        let parsed = serde_json::from_value(args.clone());
        match (method, parsed) {
            ("add", Ok(Args { a, b })) => json!({"sum": (a + b)}),
            ("mul", Ok(Args { a, b })) => json!({"product": (a * b)}),
            (_, Err(e)) => Value::String(format!("Invalid args: {e}")),
            _ => Value::String("Unknown method".into()),
        }
    }
}

/// An object that would answer differently, to show it never gets the name.
struct Hijacker;

#[async_trait]
impl SharedObject for Hijacker {
    async fn call(&self, _method: &str, _args: &Value) -> Value {
        json!("hijacked")
    }
}

/// Takes the exclusive lock on ipc-broker's socket path; it is held while the file stays open.
async fn lock_ipc_path() -> std::fs::File {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("{IPC_BROKER_SOCKET}.lock"))
        .expect("lock file");
    tokio::task::spawn_blocking(move || {
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).expect("flock");
        file
    })
    .await
    .expect("lock task")
}

/// An ipc-broker peer speaking hand-built packets.
struct IpcRaw<S> {
    stream: S,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> IpcRaw<S> {
    fn new(stream: S) -> Self {
        IpcRaw {
            stream,
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, message: Value) {
        let mut packet = BytesMut::new();
        put_packet(&mut packet, message.to_string().as_bytes());
        self.stream.write_all(&packet).await.expect("write");
    }

    async fn recv(&mut self) -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(body) = take_packet(&mut self.buf, u32::MAX).expect("valid packet") {
                    return serde_json::from_slice(&body).expect("JSON");
                }
                let n = self.stream.read_buf(&mut self.buf).await.expect("read");
                assert!(n > 0, "the broker closed the connection");
            }
        })
        .await
        .expect("a packet in time")
    }
}

/// Polls `plexus.stats` until `ready` holds for it.
async fn until_stats(
    native: &mut RawClient<UnixStream>,
    id: &mut u64,
    ready: impl Fn(&Value) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        *id += 1;
        let stats = json(
            &native
                .request(Frame::call(*id, "plexus", "stats", 0, b""))
                .await,
        );
        if ready(&stats) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stats never got there: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {WAIT:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipc_broker_programs_work_unchanged_and_get_plexus_guarantees() {
    let _lock = lock_ipc_path().await;
    let broker = TestBroker::with_config(Config {
        ipc_broker_socket: Some(IPC_BROKER_SOCKET.into()),
        ipc_broker_tcp: Some("127.0.0.1:0".parse().expect("addr")),
        ..Config::default()
    })
    .await;
    let ipc_tcp = broker.tcp_addrs[1];
    let mut native = broker.raw_client("native").await;
    let mut next_id = 100;

    // ipc-broker's calculator worker and client: math.add {a:10,b:32} → {"sum":42}.
    let (builder, stop_worker) = WorkerBuilder::new()
        .add("math", Calculator)
        .with_graceful_shutdown();
    let worker = tokio::spawn(builder.spawn());
    let client = within("IPCClient::connect", IPCClient::connect())
        .await
        .expect("the client connects to /tmp/ipc_broker.sock");
    within("wait_for_object", client.wait_for_object("math"))
        .await
        .expect("math appears");
    let sum: Value = within(
        "remote_call",
        client.remote_call::<Args, Value>("math", "add", Args { a: 10, b: 32 }),
    )
    .await
    .expect("math.add answers");
    assert_eq!(sum, json!({"sum": 42}));

    // A native caller calls the ipc-broker worker.
    let reply = native
        .request(Frame::call(1, "math", "mul", 5000, br#"{"a":6,"b":7}"#))
        .await;
    assert_eq!(reply.kind(), Kind::Reply, "{reply:?}");
    assert_eq!(json(&reply), json!({"product": 42}));

    // The ipc-broker client calls a native worker (a dotted name, split at the last dot).
    let mut native_worker = broker.raw_client("native-worker").await;
    native_worker.register(1, "native.calc").await;
    let serving = tokio::spawn(async move {
        let call = native_worker.recv().await;
        assert_eq!((call.string(0), call.string(1)), ("native.calc", "add"));
        let p = json(&call);
        let sum = p["a"].as_i64().unwrap_or(0) + p["b"].as_i64().unwrap_or(0);
        let body = json!({ "sum": sum }).to_string();
        native_worker
            .send(Frame::reply(call.id(), body.as_bytes()))
            .await;
        native_worker
    });
    let sum: Value = within(
        "call to native",
        client.remote_call::<Value, Value>("native.calc", "add", json!({"a": 1, "b": 2})),
    )
    .await
    .expect("the native worker answers");
    assert_eq!(sum, json!({"sum": 3}));
    let _native_worker = within("native worker", serving).await.expect("served");

    // A missing object is an error at once, not a hang.
    let missing = within(
        "call to a missing object",
        client.remote_call::<Value, Value>("nope", "x", Value::Null),
    )
    .await
    .expect_err("no such object");
    assert!(missing.to_string().contains("no_such_object"), "{missing}");

    // An error's data follows its message, in the one text remote_call gives back.
    let timeout = within(
        "a wait_for that times out",
        client.remote_call::<Value, Value>(
            "plexus",
            "wait_for",
            json!({"names": ["never"], "timeout_ms": 20}),
        ),
    )
    .await
    .expect_err("never registered");
    let text = timeout.to_string();
    assert_eq!(
        text,
        "Remote error: timeout: still not registered when the wait ended: [\"never\"]\ndata: {\"missing\":[\"never\"]}"
    );
    let data = text.rsplit_once("\ndata: ").map(|(_, d)| d);
    let data: Value = serde_json::from_str(data.unwrap_or_default()).expect("JSON data");
    assert_eq!(data, json!({"missing": ["never"]}));

    // A worker that dies during a call: the caller hears worker_gone.
    let mut flaky = IpcRaw::new(
        UnixStream::connect(IPC_BROKER_SOCKET)
            .await
            .expect("connect"),
    );
    flaky
        .send(json!({"RegisterObject": {"object_name": "flaky"}}))
        .await;
    assert_eq!(
        flaky.recv().await,
        json!({"Registered": {"object_name": "flaky"}})
    );
    let pending = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .remote_call::<Value, Value>("flaky", "work", json!([1]))
                .await
        }
    });
    let call = flaky.recv().await;
    assert_eq!(call["Call"]["object_name"], "flaky");
    assert_eq!(call["Call"]["args"], json!([1]));
    drop(flaky);
    let gone = within("call to a dying worker", pending)
        .await
        .expect("task")
        .expect_err("the worker died");
    assert!(gone.to_string().contains("worker_gone"), "{gone}");

    // Names cannot be hijacked: a second RegisterObject of "math" is refused, and a second
    // WorkerBuilder serving "math" never gets its calls.
    let mut thief = IpcRaw::new(TcpStream::connect(ipc_tcp).await.expect("connect tcp"));
    thief
        .send(json!({"RegisterObject": {"object_name": "math"}}))
        .await;
    let refused = thief.recv().await;
    assert_eq!(refused["Error"]["call_id"], Value::Null);
    let message = refused["Error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("name_taken: "), "{message}");
    let (hijacker, stop_hijacker) = WorkerBuilder::new()
        .add("math", Hijacker)
        .with_graceful_shutdown();
    let hijacker = tokio::spawn(hijacker.spawn());
    until_stats(&mut native, &mut next_id, |s| {
        s["errors"]["name_taken"].as_u64() >= Some(2)
    })
    .await;
    let sum: Value = within(
        "remote_call after the hijack attempt",
        client.remote_call::<Args, Value>("math", "add", Args { a: 2, b: 2 }),
    )
    .await
    .expect("math.add still answers");
    assert_eq!(sum, json!({"sum": 4}), "the first owner keeps the name");

    // Over TCP with hand-built packets: HasObject and a call.
    thief
        .send(json!({"HasObject": {"object_name": "math"}}))
        .await;
    assert_eq!(
        thief.recv().await,
        json!({"HasObjectResult": {"object_name": "math", "exists": true}})
    );
    thief
        .send(json!({"HasObject": {"object_name": "ghost"}}))
        .await;
    assert_eq!(
        thief.recv().await,
        json!({"HasObjectResult": {"object_name": "ghost", "exists": false}})
    );
    thief
        .send(json!({"Call": {"call_id": "c-1", "object_name": "math", "method": "add", "args": {"a": 20, "b": 22}}}))
        .await;
    assert_eq!(
        thief.recv().await,
        json!({"Result": {"call_id": "c-1", "object_name": "math", "value": {"sum": 42}}})
    );

    // Publish and subscribe: ipc-broker's (object, topic) is the plexus topic "object.topic".
    let mut native_sub = broker.raw_client("native-sub").await;
    native_sub.subscribe(7, "sensor.>").await;
    let subscriber = within("IPCClient::connect", IPCClient::connect())
        .await
        .expect("connect");
    let mut updates = subscriber.subscribe("sensor", "temperature").await;
    until_stats(&mut native, &mut next_id, |s| {
        s["subscriptions"].as_u64() >= Some(2)
    })
    .await;
    let publisher = within("IPCClient::connect", IPCClient::connect())
        .await
        .expect("connect");
    publisher
        .publish("sensor", "temperature", &Value::String("25.6°C".into()))
        .await
        .expect("publish");
    assert_eq!(
        within("the ipc-broker subscriber's event", updates.recv()).await,
        Some(json!("25.6°C"))
    );
    let event = native_sub.recv().await;
    assert_eq!(
        (event.kind(), event.id(), event.string(0)),
        (Kind::Event, 7, "sensor.temperature")
    );
    assert_eq!(json(&event), json!("25.6°C"));
    native
        .send(Frame::publish(
            0,
            "sensor.temperature",
            b"{\"c\":21}",
            false,
        ))
        .await;
    assert_eq!(
        within(
            "the native publish at the ipc-broker subscriber",
            updates.recv()
        )
        .await,
        Some(json!({"c": 21}))
    );

    // An event over ipc-broker's 64 KiB packets is not sent to its subscriber (whose client
    // would drop the connection), and plexus.stats counts it dropped, not delivered.
    assert_eq!(json(&native_sub.recv().await), json!({"c": 21}));
    next_id += 1;
    let before = json(
        &native
            .request(Frame::call(next_id, "plexus", "stats", 0, b""))
            .await,
    );
    let big = format!("\"{}\"", "x".repeat(70 * 1024));
    next_id += 1;
    let ack = native
        .request(Frame::publish(
            next_id,
            "sensor.temperature",
            big.as_bytes(),
            true,
        ))
        .await;
    assert_eq!(
        json(&ack),
        json!({"delivered": 2, "dropped": 0}),
        "queued for both subscribers"
    );
    assert_eq!(native_sub.recv().await.payload().len(), big.len());
    let dropped = before["events_dropped"].as_u64().unwrap_or_default() + 1;
    until_stats(&mut native, &mut next_id, |s| {
        s["events_dropped"].as_u64() == Some(dropped)
    })
    .await;
    next_id += 1;
    let after = json(
        &native
            .request(Frame::call(next_id, "plexus", "stats", 0, b""))
            .await,
    );
    assert_eq!(
        after["events_delivered"].as_u64(),
        before["events_delivered"].as_u64().map(|n| n + 1),
        "only the native subscriber's copy counts as delivered"
    );
    native
        .send(Frame::publish(0, "sensor.temperature", b"\"after\"", false))
        .await;
    assert_eq!(
        within(
            "the next event at the ipc-broker subscriber",
            updates.recv()
        )
        .await,
        Some(json!("after")),
        "the subscriber's connection is fine"
    );
    assert_eq!(json(&native_sub.recv().await), json!("after"));

    // Shut down: the workers stop, and the broker removes ipc-broker's socket file.
    let _ = stop_worker.send(true);
    let _ = stop_hijacker.send(true);
    within("the worker stops", worker)
        .await
        .expect("task")
        .expect("worker ends cleanly");
    within("the hijacker stops", hijacker)
        .await
        .expect("task")
        .expect("hijacker ends cleanly");
    broker.stop().await;
    assert!(
        !Path::new(IPC_BROKER_SOCKET).exists(),
        "the broker removes {IPC_BROKER_SOCKET}"
    );
}
