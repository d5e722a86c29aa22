//! The connection limit: a connection past it gets an immediate `overloaded` error, and a closed
//! connection frees its place.

use plexus_broker::Config;
use plexus_proto::{ErrorCode, Frame, Kind};
use tokio::net::{TcpStream, UnixStream};

use plexus_test_support::{RawClient, TestBroker, json};

#[tokio::test]
async fn connections_past_the_limit_are_told_overloaded_and_closed() {
    let broker = TestBroker::with_config(Config {
        max_connections: 2,
        ..Config::default()
    })
    .await;
    let mut a = broker.raw_client("a").await;
    let b = broker.raw_client("b").await;

    let mut refused = RawClient::raw(UnixStream::connect(&broker.path).await.expect("connect"));
    let err = refused.expect_error(ErrorCode::Overloaded).await;
    assert_eq!(err.id(), 0);
    assert!(
        err.string(0).contains("2 connections"),
        "the message names the limit: {}",
        err.string(0)
    );
    refused.expect_closed().await;

    let mut refused = RawClient::raw(TcpStream::connect(broker.tcp).await.expect("connect"));
    refused.send(Frame::hello("late")).await;
    refused.expect_error(ErrorCode::Overloaded).await;
    refused.expect_closed().await;

    let stats = json(&a.request(Frame::call(1, "plexus", "stats", 0, b"")).await);
    assert_eq!(stats["connections_refused"], 2);
    assert_eq!(stats["connections"], 2);

    drop(b);
    let mut c = loop {
        let mut c = RawClient::raw(UnixStream::connect(&broker.path).await.expect("connect"));
        c.send(Frame::hello("c")).await;
        let answer = c.recv().await;
        if answer.kind() == Kind::Welcome {
            break c;
        }
        assert_eq!(
            answer.error_code(),
            ErrorCode::Overloaded,
            "refused only while b's connection is still closing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let pong = c.request(Frame::ping(1, b"")).await;
    assert_eq!(
        pong.kind(),
        Kind::Pong,
        "a closed connection frees its place"
    );
}
