//! Memfd payloads from a hostile peer, against a real `plexus broker` process: every descriptor
//! that is not one sealed memfd within the limit, sent with the frame flagged to carry it on a
//! connection that asked for them, ends that connection with an error naming what was wrong; the
//! broker closes the descriptor (its count of open descriptors comes back to where it was) and
//! the other clients go on undisturbed.

mod cli_support;

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use cli_support::{Bus, WAIT};
use plexus_proto::{ErrorCode, Frame, Kind, flags};
use plexus_test_support::{RawClient, memfd};
use rustix::fs::SealFlags;
use tokio::net::UnixStream;

const SEALED: SealFlags = SealFlags::WRITE
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// The broker's open descriptors.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the broker's /proc/PID/fd")
        .count()
}

/// Waits until the broker holds `expected` descriptors again.
async fn fds_back_to(pid: u32, expected: usize, after: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = open_fds(pid);
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {after}: the broker holds {now} descriptors, {expected} before"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A bystander's call through the broker to another bystander still works.
async fn bystanders_undisturbed(
    caller: &mut RawClient<UnixStream>,
    worker: &mut RawClient<UnixStream>,
    id: u64,
) {
    caller
        .send(Frame::call(id, "bystander", "m", 5_000, b"[1]"))
        .await;
    let call = worker.recv().await;
    assert_eq!(call.kind(), Kind::Call);
    worker.send(Frame::reply(call.id(), b"[2]")).await;
    let reply = caller.recv().await;
    assert_eq!((reply.kind(), reply.id()), (Kind::Reply, id), "{reply:?}");
    assert_eq!(&reply.payload()[..], b"[2]");
}

/// What a hostile peer sends after its hello (or instead of it).
struct Case {
    name: &'static str,
    /// Whether it says hello asking for memfd payloads first; `None`: no hello at all.
    hello_fds: Option<bool>,
    frame: Frame,
    fds: Vec<std::os::fd::OwnedFd>,
    code: ErrorCode,
    /// Words the error's message must contain.
    says: &'static str,
}

fn flagged_publish() -> Frame {
    Frame::publish(0, "t", b"", false).with_flags(flags::FD_PAYLOAD)
}

fn cases() -> Vec<Case> {
    let (pipe_read, _pipe_write) = rustix::pipe::pipe().expect("pipe");
    let big = vec![b'x'; 17 << 20];
    vec![
        Case {
            name: "an unsealed memfd",
            hello_fds: Some(true),
            frame: flagged_publish(),
            fds: vec![memfd(b"\"x\"", SealFlags::empty())],
            code: ErrorCode::BadFrame,
            says: "lacks the seals F_SEAL_WRITE|F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL",
        },
        Case {
            name: "a memfd sealed only against writes",
            hello_fds: Some(true),
            frame: flagged_publish(),
            fds: vec![memfd(b"\"x\"", SealFlags::WRITE)],
            code: ErrorCode::BadFrame,
            says: "lacks the seals F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL",
        },
        Case {
            name: "a pipe",
            hello_fds: Some(true),
            frame: flagged_publish(),
            fds: vec![pipe_read],
            code: ErrorCode::BadFrame,
            says: "is a pipe, not a sealed memfd",
        },
        Case {
            name: "two descriptors with one frame",
            hello_fds: Some(true),
            frame: flagged_publish(),
            fds: vec![memfd(b"\"x\"", SEALED), memfd(b"\"y\"", SEALED)],
            code: ErrorCode::BadFrame,
            says: "more than one descriptor arrived at once",
        },
        Case {
            name: "a descriptor with a frame not flagged for it",
            hello_fds: Some(true),
            frame: Frame::publish(0, "t", b"", false),
            fds: vec![memfd(b"\"x\"", SEALED)],
            code: ErrorCode::BadFrame,
            says: "a descriptor arrived with no frame flagged fd_payload to carry it",
        },
        Case {
            name: "a frame flagged without its descriptor",
            hello_fds: Some(true),
            frame: flagged_publish(),
            fds: vec![],
            code: ErrorCode::BadFrame,
            says: "publish 0 is flagged fd_payload, but no descriptor came with it",
        },
        Case {
            name: "a memfd over the frame limit",
            hello_fds: Some(true),
            frame: flagged_publish(),
            fds: vec![memfd(&big, SEALED)],
            code: ErrorCode::FrameTooLarge,
            says: "exceeds the limit of",
        },
        Case {
            name: "a descriptor on a connection that did not ask",
            hello_fds: Some(false),
            frame: flagged_publish(),
            fds: vec![memfd(b"\"x\"", SEALED)],
            code: ErrorCode::BadFrame,
            says: "a descriptor arrived on a connection that did not ask for fd payloads",
        },
        Case {
            name: "a descriptor before hello",
            hello_fds: None,
            frame: Frame::hello("early").with_flags(flags::FD_PAYLOAD),
            fds: vec![memfd(b"\"x\"", SEALED)],
            code: ErrorCode::BadFrame,
            says: "a descriptor arrived on a connection that did not ask for fd payloads",
        },
    ]
}

#[tokio::test]
async fn hostile_descriptors_are_refused_by_name_closed_and_disturb_nobody() {
    let bus = Bus::start();
    let pid = bus.broker_pid();
    let socket = bus.socket();
    let connect = || UnixStream::connect(&socket);
    let mut worker = RawClient::hello_fds(connect().await.expect("connect"), "worker").await;
    worker.register(1, "bystander").await;
    let mut caller = RawClient::hello(connect().await.expect("connect"), "caller").await;
    bystanders_undisturbed(&mut caller, &mut worker, 1).await;
    let before = open_fds(pid);
    for (n, case) in cases().into_iter().enumerate() {
        eprintln!("case: {}", case.name);
        let stream = connect().await.expect("connect");
        let mut hostile = match case.hello_fds {
            Some(true) => RawClient::hello_fds(stream, case.name).await,
            Some(false) => RawClient::hello(stream, case.name).await,
            None => RawClient::raw(stream),
        };
        let fds: Vec<BorrowedFd<'_>> = case.fds.iter().map(|fd| fd.as_fd()).collect();
        hostile.send_with_fds(&case.frame, &fds).await;
        let error = hostile.expect_error(case.code).await;
        assert!(
            error.string(0).contains(case.says),
            "{}: the error says {:?}",
            case.name,
            error.string(0)
        );
        hostile.expect_closed().await;
        drop(hostile);
        fds_back_to(pid, before, case.name).await;
        bystanders_undisturbed(&mut caller, &mut worker, 100 + n as u64).await;
    }
}

#[tokio::test]
async fn forwarded_memfds_are_closed_once_delivered() {
    let bus = Bus::start();
    let pid = bus.broker_pid();
    let socket = bus.socket();
    let mut subscriber =
        RawClient::hello_fds(UnixStream::connect(&socket).await.expect("connect"), "sub").await;
    subscriber.subscribe(1, "big").await;
    let mut plain = RawClient::hello(
        UnixStream::connect(&socket).await.expect("connect"),
        "plain",
    )
    .await;
    plain.subscribe(2, "big").await;
    let mut publisher =
        RawClient::hello_fds(UnixStream::connect(&socket).await.expect("connect"), "pub").await;
    let before = open_fds(pid);
    let body = vec![b'7'; 1 << 20];
    for _ in 0..5 {
        let fd = memfd(&body, SEALED);
        publisher
            .send_with_fds(&flagged_publish_to("big"), &[fd.as_fd()])
            .await;
        let (event, got) = subscriber.recv_with_fd().await;
        assert_eq!(event.kind(), Kind::Event);
        assert!(got.is_some(), "the memfd is forwarded to a peer that asked");
        let inline = plain.recv().await;
        assert_eq!(
            inline.payload().len(),
            body.len(),
            "inline for a peer that did not"
        );
    }
    fds_back_to(pid, before, "five forwarded memfds").await;
}

fn flagged_publish_to(topic: &str) -> Frame {
    Frame::publish(0, topic, b"", false).with_flags(flags::FD_PAYLOAD)
}
