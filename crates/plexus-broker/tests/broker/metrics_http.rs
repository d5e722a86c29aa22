//! The metrics endpoint's HTTP: a request head is bounded, found wherever its blank line falls,
//! and answered once.

use std::net::SocketAddr;

use plexus_broker::Config;
use plexus_test_support::{TestBroker, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn broker() -> (TestBroker, SocketAddr) {
    let broker = TestBroker::with_config(Config {
        http: Some("127.0.0.1:0".parse().expect("addr")),
        ..Config::default()
    })
    .await;
    let addr = broker.http.expect("metrics address");
    (broker, addr)
}

/// Everything the server sends until it closes.
async fn response(stream: &mut TcpStream) -> String {
    let mut text = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut text))
        .await
        .expect("the server answers and closes in time")
        .expect("read");
    text
}

#[tokio::test]
async fn a_request_head_over_8_kib_is_answered_431_and_closed() {
    let (_broker, addr) = broker().await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!("GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n", "a".repeat(9000));
    stream.write_all(head.as_bytes()).await.expect("send");
    let text = response(&mut stream).await;
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
}

#[tokio::test]
async fn a_request_head_sent_a_byte_at_a_time_is_answered() {
    let (_broker, addr) = broker().await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" {
        stream.write_all(&[*byte]).await.expect("send");
        stream.flush().await.expect("flush");
    }
    let text = response(&mut stream).await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("plexus_outbox_bytes "), "{text}");
}

#[tokio::test]
async fn a_head_just_under_the_limit_is_answered() {
    let (_broker, addr) = broker().await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let start = "GET /metrics HTTP/1.1\r\nX-Pad: ";
    let pad = 8192 - start.len() - "\r\n\r\n".len();
    let head = format!("{start}{}\r\n\r\n", "a".repeat(pad));
    assert_eq!(head.len(), 8192);
    stream.write_all(head.as_bytes()).await.expect("send");
    let text = response(&mut stream).await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
}
