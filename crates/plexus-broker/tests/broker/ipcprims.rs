//! ipcprims on the bus socket: hand-built `IP` frames — the handshake, JSON-RPC on COMMAND to
//! native workers and from the broker to a registered peer, events both ways on DATA and
//! TELEMETRY, CONTROL pings and shutdown, and errors on ERROR.

use bytes::BytesMut;
use plexus_proto::dialect::ipcprims::{
    COMMAND, CONTROL, DATA, ERROR, TELEMETRY, put_frame, take_frame,
};
use plexus_proto::{Frame, Kind};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use plexus_test_support::{TestBroker, WAIT, json};

/// An ipcprims peer speaking hand-built frames.
struct IpClient {
    stream: UnixStream,
    buf: BytesMut,
}

impl IpClient {
    async fn connect(broker: &TestBroker) -> IpClient {
        IpClient {
            stream: UnixStream::connect(&broker.path).await.expect("connect"),
            buf: BytesMut::new(),
        }
    }

    /// Connects and shakes hands asking for `channels`; returns the handshake response.
    async fn open(broker: &TestBroker, channels: &[u16]) -> (IpClient, Value) {
        let mut c = IpClient::connect(broker).await;
        c.send(
            CONTROL,
            json!({"protocol":"ipcprims","version":"1.0","channels":channels,"auth_token":"secret"}),
        )
        .await;
        let (channel, response) = c.recv().await;
        assert_eq!(channel, CONTROL);
        (c, response)
    }

    async fn send(&mut self, channel: u16, msg: Value) {
        let mut frame = BytesMut::new();
        put_frame(&mut frame, channel, msg.to_string().as_bytes());
        self.stream.write_all(&frame).await.expect("write");
    }

    /// The next frame as (channel, JSON), or `None` when the broker closed.
    async fn recv_frame(&mut self) -> Option<(u16, Value)> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some((channel, payload)) =
                    take_frame(&mut self.buf, u32::MAX).expect("valid frames")
                {
                    let value = serde_json::from_slice(&payload).expect("JSON payloads");
                    return Some((channel, value));
                }
                let n = self.stream.read_buf(&mut self.buf).await.expect("read");
                if n == 0 {
                    return None;
                }
            }
        })
        .await
        .expect("a frame in time")
    }

    async fn recv(&mut self) -> (u16, Value) {
        self.recv_frame().await.expect("connection open")
    }

    async fn request(&mut self, msg: Value) -> Value {
        self.send(COMMAND, msg).await;
        let (channel, answer) = self.recv().await;
        assert_eq!(channel, COMMAND, "{answer}");
        answer
    }
}

#[tokio::test]
async fn ipcprims_peers_shake_hands_and_call_native_objects_with_json_rpc() {
    let broker = TestBroker::start().await;
    let mut worker = broker.raw_client("calc").await;
    worker.register(1, "org.x.math").await;

    let (mut peer, hello) = IpClient::open(&broker, &[1, 2, 4, 256]).await;
    assert_eq!(hello["protocol"], "ipcprims");
    assert_eq!(hello["version"], "1.0");
    assert_eq!(hello["channels"], json!([1, 2, 4]));
    let peer_id = hello["peer_id"].as_str().unwrap_or_default();
    assert!(peer_id.starts_with("plexus-"), "{hello}");

    peer.send(
        COMMAND,
        json!({"jsonrpc":"2.0","id":7,"method":"org.x.math.add","params":{"a":1,"b":2}}),
    )
    .await;
    let call = worker.recv().await;
    assert_eq!((call.string(0), call.string(1)), ("org.x.math", "add"));
    assert_eq!(json(&call), json!({"a":1,"b":2}));
    worker.send(Frame::reply(call.id(), br#"{"sum":3}"#)).await;
    assert_eq!(
        peer.recv().await,
        (COMMAND, json!({"jsonrpc":"2.0","id":7,"result":{"sum":3}}))
    );

    let missing = peer
        .request(json!({"jsonrpc":"2.0","id":"x","method":"nope.m"}))
        .await;
    assert_eq!(missing["id"], "x");
    assert_eq!(missing["error"]["code"], 1, "no_such_object: {missing}");

    let list = peer
        .request(json!({"jsonrpc":"2.0","id":8,"method":"plexus.list"}))
        .await;
    let names = list["result"].as_array().expect("a list");
    let clients: Vec<&str> = names
        .iter()
        .flat_map(|n| n["owners"].as_array().into_iter().flatten())
        .filter_map(|o| o["client"].as_str())
        .collect();
    assert!(clients.contains(&"calc"), "{list}");

    let pong = peer
        .request(json!({"jsonrpc":"2.0","id":9,"method":"plexus.ping"}))
        .await;
    assert_eq!(
        format!("plexus-{}", pong["result"]["conn_id"]),
        peer_id,
        "the peer id names the connection"
    );
}

#[tokio::test]
async fn events_cross_between_ipcprims_and_native_peers() {
    let broker = TestBroker::start().await;
    let (mut peer, _) = IpClient::open(&broker, &[1, 2, 3]).await;
    let sub = peer
        .request(
            json!({"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"pattern":"sensor.>"}}),
        )
        .await;
    let sub_id = sub["result"]["subscription"].as_u64().expect("an id");
    let tel = peer
        .request(json!({"jsonrpc":"2.0","id":2,"method":"subscribe","params":{"pattern":"cpu","channel":3}}))
        .await;
    assert!(tel["result"]["subscription"].is_u64(), "{tel}");

    let mut native = broker.raw_client("native").await;
    native.subscribe(1, "metrics.>").await;
    native
        .send(Frame::publish(0, "sensor.t", b"21.5", false))
        .await;
    assert_eq!(
        peer.recv().await,
        (DATA, json!({"topic":"sensor.t","payload":21.5}))
    );
    native.send(Frame::publish(0, "cpu", b"", false)).await;
    assert_eq!(
        peer.recv().await,
        (TELEMETRY, json!({"topic":"cpu","payload":null}))
    );

    peer.send(DATA, json!({"topic":"metrics.mem","payload":{"free":1}}))
        .await;
    peer.send(TELEMETRY, json!({"topic":"metrics.cpu","payload":0.5}))
        .await;
    peer.send(
        COMMAND,
        json!({"jsonrpc":"2.0","method":"metrics.disk","params":[1]}),
    )
    .await;
    for (topic, body) in [
        ("metrics.mem", json!({"free":1})),
        ("metrics.cpu", json!(0.5)),
        ("metrics.disk", json!([1])),
    ] {
        let event = native.recv().await;
        assert_eq!((event.kind(), event.string(0)), (Kind::Event, topic));
        assert_eq!(json(&event), body);
    }
    let acked = peer
        .request(json!({"jsonrpc":"2.0","id":3,"method":"publish","params":{"topic":"metrics.x","payload":1}}))
        .await;
    assert_eq!(acked["result"], json!({"delivered":1,"dropped":0}));
    native.recv().await;

    let unsub = peer
        .request(
            json!({"jsonrpc":"2.0","id":4,"method":"unsubscribe","params":{"subscription":sub_id}}),
        )
        .await;
    assert_eq!(unsub, json!({"jsonrpc":"2.0","id":4,"result":null}));
    native
        .send(Frame::publish(0, "sensor.t", b"1", false))
        .await;
    let ping = peer
        .request(json!({"jsonrpc":"2.0","id":5,"method":"plexus.ping"}))
        .await;
    assert_eq!(ping["id"], 5, "no event came before the answer: {ping}");
}

#[tokio::test]
async fn a_registered_ipcprims_peer_is_called_with_json_rpc() {
    let broker = TestBroker::start().await;
    let (mut peer, _) = IpClient::open(&broker, &[1]).await;
    let reg = peer
        .request(json!({"jsonrpc":"2.0","id":1,"method":"register","params":{"name":"echo"}}))
        .await;
    assert_eq!(reg["result"], Value::Null, "{reg}");
    let mut native = broker.raw_client("native").await;
    native
        .send(Frame::call(3, "echo", "say", 0, br#"{"x":1}"#))
        .await;
    let (channel, request) = peer.recv().await;
    assert_eq!(channel, COMMAND);
    assert_eq!(request["method"], "echo.say");
    assert_eq!(request["params"], json!({"x":1}));
    peer.send(
        COMMAND,
        json!({"jsonrpc":"2.0","id":request["id"],"result":{"said":1}}),
    )
    .await;
    let reply = native.recv().await;
    assert_eq!((reply.kind(), reply.id()), (Kind::Reply, 3));
    assert_eq!(json(&reply), json!({"said":1}));
}

#[tokio::test]
async fn control_pings_shutdowns_and_errors() {
    let broker = TestBroker::start().await;
    let (mut peer, _) = IpClient::open(&broker, &[1, 4]).await;
    peer.send(CONTROL, json!({"type":"ping"})).await;
    assert_eq!(peer.recv().await, (CONTROL, json!({"type":"pong"})));

    peer.send(DATA, json!({"topic":"a"})).await;
    let (channel, err) = peer.recv().await;
    assert_eq!(channel, ERROR);
    assert_eq!(err["error"]["code"], 7, "DATA was not negotiated: {err}");

    let mut raw = BytesMut::new();
    put_frame(&mut raw, COMMAND, b"{not json");
    peer.stream.write_all(&raw).await.expect("write");
    let (channel, err) = peer.recv().await;
    assert_eq!(channel, COMMAND);
    assert_eq!(
        (err["id"].clone(), err["error"]["code"].clone()),
        (Value::Null, json!(7))
    );

    peer.send(CONTROL, json!({"type":"shutdown_request"})).await;
    assert_eq!(peer.recv().await, (CONTROL, json!({"type":"shutdown_ack"})));
    peer.stream.shutdown().await.expect("close");
    assert_eq!(peer.recv_frame().await, None, "the broker closes too");
}

#[tokio::test]
async fn refused_handshakes_are_closed_without_an_answer() {
    let broker = TestBroker::start().await;
    for hello in [
        json!({"protocol":"ipcprims","version":"2.0","channels":[1]}),
        json!({"protocol":"ipcprims","version":"1.0","channels":[256]}),
        json!({"protocol":"ipcprims","version":"1.0","channels":[0,1]}),
    ] {
        let mut c = IpClient::connect(&broker).await;
        c.send(CONTROL, hello.clone()).await;
        assert_eq!(c.recv_frame().await, None, "{hello}");
    }
    let mut c = IpClient::connect(&broker).await;
    c.send(
        COMMAND,
        json!({"jsonrpc":"2.0","id":1,"method":"plexus.ping"}),
    )
    .await;
    assert_eq!(c.recv_frame().await, None, "no handshake first");
}
