//! Peers that send slowly or not at all: the handshake and a message that has begun must each
//! complete in time; a connection with nothing pending may stay idle; nothing large is reserved
//! for a peer that has not said hello.

use std::time::Duration;

use plexus_broker::Config;
use plexus_proto::{ErrorCode, Frame, HEADER_LEN, Kind};
use plexus_test_support::{RawClient, TestBroker, WAIT};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const SHORT: Duration = Duration::from_millis(200);

async fn broker_with_short_timeouts() -> TestBroker {
    TestBroker::with_config(Config {
        handshake_timeout: SHORT,
        partial_frame_timeout: SHORT,
        ..Config::default()
    })
    .await
}

/// The next line from a dialect connection, as JSON (`Null` once closed).
async fn next_json(lines: &mut tokio::io::Lines<BufReader<UnixStream>>) -> serde_json::Value {
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("a line or the close in time")
        .expect("read");
    line.map_or(serde_json::Value::Null, |l| {
        serde_json::from_str(&l).expect("JSON")
    })
}

#[tokio::test]
async fn a_frame_begun_after_hello_must_complete_within_the_partial_frame_timeout() {
    let broker = broker_with_short_timeouts().await;
    let mut c = broker.raw_client("slow").await;
    let ping = Frame::ping(1, b"half of me").to_bytes();
    c.send_bytes(&ping[..ping.len() / 2]).await;
    let err = c.expect_error(ErrorCode::BadFrame).await;
    assert!(
        err.string(0).contains("partial_frame_timeout"),
        "names the timeout: {}",
        err.string(0)
    );
    c.expect_closed().await;
}

#[tokio::test]
async fn a_frame_trickled_in_pieces_within_the_timeout_is_taken() {
    let broker = TestBroker::with_config(Config {
        partial_frame_timeout: Duration::from_secs(5),
        ..Config::default()
    })
    .await;
    let mut c = broker.raw_client("trickle").await;
    for byte in Frame::ping(1, b"slowly").to_bytes().iter() {
        c.send_bytes(&[*byte]).await;
    }
    let pong = c.recv().await;
    assert_eq!((pong.kind(), pong.id()), (Kind::Pong, 1));
}

#[tokio::test]
async fn a_connection_with_nothing_pending_may_stay_idle_past_every_timeout() {
    let broker = broker_with_short_timeouts().await;
    let mut c = broker.raw_client("idle").await;
    tokio::time::sleep(SHORT * 4).await;
    let pong = c.request(Frame::ping(1, b"")).await;
    assert_eq!(pong.kind(), Kind::Pong, "still served after idling");
}

#[tokio::test]
async fn before_hello_a_frame_over_64_kib_is_refused_from_its_header() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::raw(UnixStream::connect(&broker.path).await.expect("connect"));
    let hello = Frame::build(Kind::Hello, 0, 0, 0, &["big"], &vec![0u8; 1024 * 1024]);
    c.send_bytes(&hello.to_bytes()[..HEADER_LEN]).await;
    let err = c.expect_error(ErrorCode::FrameTooLarge).await;
    assert!(
        err.string(0).contains("65536") && err.string(0).contains("before hello"),
        "{}",
        err.string(0)
    );
    c.expect_closed().await;
}

#[tokio::test]
async fn a_hello_just_under_64_kib_is_taken() {
    let broker = TestBroker::start().await;
    let name = "x".repeat(60_000);
    let c = RawClient::hello(
        UnixStream::connect(&broker.path).await.expect("connect"),
        &name,
    )
    .await;
    assert!(c.conn_id > 0);
}

#[tokio::test]
async fn a_dialect_peer_that_sends_no_complete_message_within_the_handshake_timeout_is_closed() {
    let broker = broker_with_short_timeouts().await;
    let mut stream = UnixStream::connect(&broker.path).await.expect("connect");
    stream.write_all(b"{\"op\":").await.expect("send");
    let mut lines = BufReader::new(stream).lines();
    let err = next_json(&mut lines).await;
    assert_eq!(err["error"]["name"], "bad_frame", "{err}");
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("handshake timeout"), "{message}");
    assert_eq!(
        next_json(&mut lines).await,
        serde_json::Value::Null,
        "closed"
    );
}

#[tokio::test]
async fn a_dialect_message_begun_after_the_first_must_complete_within_the_partial_frame_timeout() {
    let broker = broker_with_short_timeouts().await;
    let mut stream = UnixStream::connect(&broker.path).await.expect("connect");
    stream
        .write_all(b"{\"op\":\"ping\",\"id\":1}\n{\"op\":\"pi")
        .await
        .expect("send");
    let mut lines = BufReader::new(stream).lines();
    let pong = next_json(&mut lines).await;
    assert_eq!(
        (&pong["op"], &pong["id"]),
        (&"pong".into(), &1.into()),
        "{pong}"
    );
    let err = next_json(&mut lines).await;
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("partial_frame_timeout"), "{err}");
    assert_eq!(
        next_json(&mut lines).await,
        serde_json::Value::Null,
        "closed"
    );
}

#[tokio::test]
async fn an_idle_dialect_connection_is_kept_after_its_first_message() {
    let broker = broker_with_short_timeouts().await;
    let mut stream = UnixStream::connect(&broker.path).await.expect("connect");
    stream
        .write_all(b"{\"op\":\"ping\",\"id\":1}\n")
        .await
        .expect("send");
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("in time")
        .expect("read")
        .expect("a pong");
    assert!(line.contains("pong"), "{line}");
    tokio::time::sleep(SHORT * 4).await;
    write
        .write_all(b"{\"op\":\"ping\",\"id\":2}\n")
        .await
        .expect("send");
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("in time")
        .expect("read")
        .expect("a pong after idling");
    assert!(line.contains("\"id\":2"), "{line}");
}
