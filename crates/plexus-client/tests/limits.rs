//! The client's limits on what it takes from the broker, against a real broker (and a broker
//! that breaks the rules) on a temporary socket.

#[allow(dead_code, reason = "these tests do not restart the broker")]
use std::future::IntoFuture;
use std::sync::Arc;

use bytes::BytesMut;
use plexus_client::{CallContext, Client, Error, ErrorCode};
use plexus_proto::{Frame, Header, Kind, decode};
use plexus_test_support::{TestBroker, WAIT};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::Notify;

#[tokio::test]
async fn a_call_beyond_max_concurrent_calls_is_answered_overloaded_at_once() {
    let broker = TestBroker::start().await;
    let worker = Client::builder()
        .address(broker.addr())
        .max_concurrent_calls(1)
        .connect()
        .await
        .expect("worker");
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    {
        let (started, release) = (started.clone(), release.clone());
        worker
            .serve_fn(
                "one-at-a-time",
                move |method, _params, _ctx: CallContext| {
                    let (started, release) = (started.clone(), release.clone());
                    async move {
                        if method == "hold" {
                            started.notify_one();
                            release.notified().await;
                        }
                        Ok(Value::String(method))
                    }
                },
            )
            .await
            .expect("serve");
    }
    let caller = Client::connect_to(&broker.addr()).await.expect("caller");
    let held = tokio::spawn({
        let caller = caller.clone();
        async move { caller.call::<_, Value>("one-at-a-time", "hold", &()).await }
    });
    tokio::time::timeout(WAIT, started.notified())
        .await
        .expect("the first call runs");

    let err = tokio::time::timeout(
        WAIT,
        caller
            .call::<_, Value>("one-at-a-time", "quick", &())
            .into_future(),
    )
    .await
    .expect("answered without waiting for the running call")
    .expect_err("no place free");
    assert_eq!(err.code(), ErrorCode::Overloaded, "{err}");

    release.notify_one();
    let held = tokio::time::timeout(WAIT, held)
        .await
        .expect("answered")
        .expect("task");
    assert_eq!(held.expect("the held call succeeds"), "hold");
    let quick: Value = caller
        .call("one-at-a-time", "quick", &())
        .await
        .expect("a place is free again");
    assert_eq!(quick, "quick");
}

/// The next frame a client sends, as a broker reads it.
async fn read_frame(socket: &mut UnixStream, buf: &mut BytesMut) -> Option<Frame> {
    loop {
        if let Some(frame) = decode(buf, u32::MAX).expect("the client sends valid frames") {
            return Some(frame);
        }
        if socket.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

/// A broker that announces 64 KiB frames and answers a ping with the header of a 512 MiB reply:
/// the client ends the connection at the header instead of buffering for the body.
#[tokio::test]
async fn a_frame_over_the_limit_ends_the_connection_instead_of_being_buffered() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("liar.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind");
    let liar = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut buf = BytesMut::new();
        let hello = read_frame(&mut socket, &mut buf).await.expect("hello");
        assert_eq!(hello.kind(), Kind::Hello);
        let welcome = Frame::welcome(1, 64 * 1024, "liar");
        socket
            .write_all(&welcome.to_bytes())
            .await
            .expect("welcome");
        let ping = read_frame(&mut socket, &mut buf).await.expect("ping");
        let mut huge = Header::new(Kind::Pong);
        huge.id = ping.id();
        huge.body_len = 512 * 1024 * 1024;
        socket.write_all(&huge.encode()).await.expect("header");
        while read_frame(&mut socket, &mut buf).await.is_some() {}
    });
    let client = Client::builder()
        .address(format!("unix:{}", path.display()))
        .reconnect(false)
        .connect()
        .await
        .expect("connect");
    assert_eq!(client.broker_info().max_frame, 64 * 1024);
    let err = tokio::time::timeout(WAIT, client.ping())
        .await
        .expect("answered at the header")
        .expect_err("no pong");
    assert!(
        matches!(&err, Error::ConnectionLost(why) if why.contains("exceeds the limit of 1048576 bytes")),
        "{err}"
    );
    drop(client);
    tokio::time::timeout(WAIT, liar)
        .await
        .expect("the client hung up")
        .expect("liar");
}
