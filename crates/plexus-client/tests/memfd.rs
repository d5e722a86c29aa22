//! Memfd payloads between Rust clients through a real broker on a Unix socket: large params,
//! results and events arrive byte-identical; the client sends them as sealed memfds and reads
//! the memfds it is sent; a peer that did not ask for them gets the bytes inline.

use std::os::fd::AsFd;
use std::time::Duration;

use plexus_client::Client;
use plexus_proto::{Frame, Kind, flags};
use plexus_test_support::{RawClient, TestBroker, memfd, read_memfd};
use rustix::fs::SealFlags;
use serde_json::Value;
use tokio::net::UnixStream;

const SEALED: SealFlags = SealFlags::WRITE
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// A JSON string of `len` bytes whose content varies, so a shifted or truncated copy differs.
fn payload(len: usize) -> Vec<u8> {
    let mut body: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
    body[0] = b'"';
    body[len - 1] = b'"';
    body
}

async fn client(broker: &TestBroker) -> Client {
    Client::connect_to(&broker.addr()).await.expect("connect")
}

#[tokio::test]
async fn large_params_results_and_events_arrive_byte_identical_between_rust_clients() {
    let broker = TestBroker::start().await;
    let worker = client(&broker).await;
    worker
        .serve_fn(
            "echo",
            |_method, params: Value, _ctx| async move { Ok(params) },
        )
        .await
        .expect("serve");
    let caller = client(&broker).await;
    let subscriber = client(&broker).await;
    let mut events = subscriber.subscribe("big.>").await.expect("subscribe");
    for len in [300 * 1024, 1 << 20, 16 << 20] {
        let params = payload(len);
        let result = caller
            .call_raw("echo", "echo", &params, Duration::from_secs(30))
            .await
            .expect("call");
        assert!(result[..] == params[..], "a {len}-byte result differs");
        caller
            .publish_raw("big.data", &params)
            .await
            .expect("publish");
        let event = tokio::time::timeout(plexus_test_support::WAIT, events.next())
            .await
            .expect("the event in time")
            .expect("an event");
        assert!(
            event.payload[..] == params[..],
            "a {len}-byte event differs"
        );
    }
}

#[tokio::test]
async fn a_rust_client_sends_large_payloads_as_sealed_memfds_and_reads_the_ones_it_gets() {
    let broker = TestBroker::start().await;
    let stream = UnixStream::connect(&broker.path).await.expect("connect");
    let mut worker = RawClient::hello_fds(stream, "raw-worker").await;
    worker.register(1, "w").await;
    let caller = client(&broker).await;
    let params = payload(1 << 20);
    let answer = payload(2 << 20);
    let call = {
        let params = params.clone();
        tokio::spawn(async move {
            caller
                .call_raw("w", "m", &params, Duration::from_secs(30))
                .await
        })
    };
    let (frame, fd) = worker.recv_with_fd().await;
    assert_eq!(frame.kind(), Kind::Call);
    assert_ne!(
        frame.flags() & flags::FD_PAYLOAD,
        0,
        "the call is flagged fd_payload"
    );
    assert!(frame.payload().is_empty(), "nothing inline");
    let fd = fd.expect("a memfd came with the call");
    let seals = rustix::fs::fcntl_get_seals(&fd).expect("a memfd");
    assert!(seals.contains(SEALED), "sealed: {seals:?}");
    assert!(read_memfd(&fd) == params, "the memfd holds the params");
    let reply = memfd(&answer, SEALED);
    worker
        .send_with_fds(
            &Frame::reply(frame.id(), b"").with_flags(flags::FD_PAYLOAD),
            &[reply.as_fd()],
        )
        .await;
    let result = call.await.expect("task").expect("the call is answered");
    assert!(
        result[..] == answer[..],
        "the caller read the memfd's bytes"
    );
}

#[tokio::test]
async fn a_peer_that_did_not_ask_gets_large_payloads_inline() {
    let broker = TestBroker::start().await;
    let worker = client(&broker).await;
    let answer = payload(1 << 20);
    let reply = answer.clone();
    worker
        .serve_fn("big", move |_method, _params: Value, _ctx| {
            let reply = reply.clone();
            async move { Ok(serde_json::from_slice(&reply)?) }
        })
        .await
        .expect("serve");
    let stream = UnixStream::connect(&broker.path).await.expect("connect");
    let mut caller = RawClient::hello(stream, "plain").await;
    let (frame, fd) = {
        caller
            .send(Frame::call(7, "big", "get", 30_000, b"null"))
            .await;
        caller.recv_with_fd().await
    };
    assert_eq!(frame.kind(), Kind::Reply, "{frame:?}");
    assert!(fd.is_none(), "no descriptor for a peer that did not ask");
    assert_eq!(frame.flags() & flags::FD_PAYLOAD, 0, "not flagged");
    assert!(frame.payload()[..] == answer[..], "the bytes inline");
}

#[tokio::test]
async fn a_raw_worker_answers_with_the_bytes_it_returns_through_memfds() {
    let broker = TestBroker::start().await;
    let worker = client(&broker).await;
    worker
        .serve_raw("raw", |method, params| async move {
            assert_eq!(method, "echo");
            Ok(params)
        })
        .await
        .expect("serve");
    let caller = client(&broker).await;
    for len in [64, 1 << 20] {
        let params = payload(len);
        let result = caller
            .call_raw("raw", "echo", &params, Duration::from_secs(30))
            .await
            .expect("call");
        assert!(result[..] == params[..], "a {len}-byte raw answer differs");
    }
}

/// The file `fd` is: its device and inode.
fn file_id(fd: impl AsFd) -> (u64, u64) {
    let stat = rustix::fs::fstat(fd).expect("fstat");
    (stat.st_dev, stat.st_ino)
}

#[tokio::test]
async fn a_payload_worker_hands_the_callers_memfd_back_unread() {
    let broker = TestBroker::start().await;
    let worker = client(&broker).await;
    let (seen, mut handled) = tokio::sync::mpsc::unbounded_channel();
    worker
        .serve_payload("echo", move |_method, params| {
            let _ = seen.send((params.is_memfd(), params.len()));
            async move { Ok(params) }
        })
        .await
        .expect("serve");
    let stream = UnixStream::connect(&broker.path).await.expect("connect");
    let mut caller = RawClient::hello_fds(stream, "raw-caller").await;
    let params = payload(1 << 20);
    let sent = memfd(&params, SEALED);
    caller
        .send_with_fds(
            &Frame::call(3, "echo", "echo", 30_000, b"").with_flags(flags::FD_PAYLOAD),
            &[sent.as_fd()],
        )
        .await;
    let (reply, fd) = caller.recv_with_fd().await;
    assert_eq!(reply.kind(), Kind::Reply, "{reply:?}");
    assert_eq!(
        (reply.id(), reply.flags() & flags::FD_PAYLOAD),
        (3, flags::FD_PAYLOAD)
    );
    assert!(reply.payload().is_empty(), "nothing inline");
    let fd = fd.expect("a memfd came with the reply");
    assert_eq!(
        file_id(&fd),
        file_id(&sent),
        "the caller's own memfd came back"
    );
    assert!(read_memfd(&fd) == params, "byte-identical");
    assert_eq!(
        handled.recv().await,
        Some((true, 1 << 20)),
        "the handler got the memfd unread, with its length"
    );
}

#[tokio::test]
async fn a_payload_worker_gets_small_params_as_bytes_and_large_ones_as_a_memfd_it_can_read() {
    let broker = TestBroker::start().await;
    let worker = client(&broker).await;
    worker
        .serve_payload("p", |method, params| async move {
            match method.as_str() {
                // Answers with a new payload: the params' bytes, read.
                "copy" => Ok(plexus_client::Payload::from(params.to_bytes()?)),
                "kind" => Ok(plexus_client::Payload::from(if params.is_memfd() {
                    &b"\"memfd\""[..]
                } else {
                    &b"\"bytes\""[..]
                })),
                _ => Ok(params),
            }
        })
        .await
        .expect("serve");
    let caller = client(&broker).await;
    for (len, kind) in [
        (64, "bytes"),
        (128 * 1024 - 1, "bytes"),
        (128 * 1024, "memfd"),
        (3 << 20, "memfd"),
    ] {
        let params = payload(len);
        let timeout = Duration::from_secs(30);
        for method in ["copy", "echo"] {
            let result = caller
                .call_raw("p", method, &params, timeout)
                .await
                .expect("call");
            assert!(
                result[..] == params[..],
                "{method}: a {len}-byte answer differs"
            );
        }
        let got = caller
            .call_raw("p", "kind", &params, timeout)
            .await
            .expect("call");
        assert_eq!(got, format!("\"{kind}\"").as_bytes(), "{len}-byte params");
    }
}

#[tokio::test]
async fn a_memfd_handed_back_reaches_a_tcp_caller_inline() {
    let broker = TestBroker::start().await;
    let worker = client(&broker).await;
    worker
        .serve_payload("echo", |_method, params| async move { Ok(params) })
        .await
        .expect("serve");
    let addr = format!("tcp://{}", broker.tcp);
    let caller = Client::connect_to(&addr).await.expect("connect over TCP");
    let params = payload(1 << 20);
    let result = caller
        .call_raw("echo", "echo", &params, Duration::from_secs(30))
        .await
        .expect("call");
    assert!(result[..] == params[..], "byte-identical over TCP");
}

#[tokio::test]
async fn a_worker_answering_with_an_unsealed_memfd_is_refused_and_the_caller_told() {
    let broker = TestBroker::start().await;
    let stream = UnixStream::connect(&broker.path).await.expect("connect");
    let mut worker = RawClient::hello_fds(stream, "raw-worker").await;
    worker.register(1, "w").await;
    let caller = client(&broker).await;
    let params = payload(1 << 20);
    let call = tokio::spawn(async move {
        caller
            .call_raw("w", "m", &params, Duration::from_secs(30))
            .await
    });
    let (frame, fd) = worker.recv_with_fd().await;
    assert_eq!(frame.kind(), Kind::Call);
    let fd = fd.expect("the params' memfd");
    // Answers with a memfd nobody sealed instead of the caller's own.
    let unsealed = memfd(&payload(1 << 20), SealFlags::empty());
    worker
        .send_with_fds(
            &Frame::reply(frame.id(), b"").with_flags(flags::FD_PAYLOAD),
            &[unsealed.as_fd()],
        )
        .await;
    drop(fd);
    let error = worker.recv().await;
    assert_eq!(error.kind(), Kind::Error, "{error:?}");
    assert!(
        error.string(0).contains("seal"),
        "names the seals: {}",
        error.string(0)
    );
    worker.expect_closed().await;
    let answer = call.await.expect("task");
    let err = answer.expect_err("the caller never gets the unsealed memfd");
    assert_eq!(err.code(), plexus_client::ErrorCode::WorkerGone, "{err}");
}

#[tokio::test]
async fn a_workers_large_result_goes_back_as_a_sealed_memfd() {
    let broker = TestBroker::start().await;
    let worker = client(&broker).await;
    let answer = payload(1 << 20);
    let result = bytes::Bytes::from(answer.clone());
    worker
        .serve_raw("big", move |_method, _params| {
            let result = result.clone();
            async move { Ok(result) }
        })
        .await
        .expect("serve");
    let stream = UnixStream::connect(&broker.path).await.expect("connect");
    let mut caller = RawClient::hello_fds(stream, "raw-caller").await;
    caller
        .send(Frame::call(5, "big", "get", 30_000, b"null"))
        .await;
    let (reply, fd) = caller.recv_with_fd().await;
    assert_eq!((reply.kind(), reply.id()), (Kind::Reply, 5), "{reply:?}");
    assert_ne!(reply.flags() & flags::FD_PAYLOAD, 0, "flagged fd_payload");
    let fd = fd.expect("a memfd came with the reply");
    let seals = rustix::fs::fcntl_get_seals(&fd).expect("a memfd");
    assert!(seals.contains(SEALED), "sealed: {seals:?}");
    assert!(read_memfd(&fd) == answer, "byte-identical");
}
