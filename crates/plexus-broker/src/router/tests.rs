//! Unit tests of what no client can trigger: a connection task that panics, and a panic while a
//! frame is routed.

use std::panic::{AssertUnwindSafe, catch_unwind};

use plexus_proto::{ErrorCode, Frame, Kind};

use super::{Router, State};
use crate::config::Config;
use crate::outbox::{OutboxReceiver, outbox};
use crate::peer::PeerInfo;

fn peer() -> PeerInfo {
    PeerInfo::from_tcp(([127, 0, 0, 1], 1).into())
}

/// Every frame queued so far.
async fn queued(rx: &mut OutboxReceiver) -> Vec<Frame> {
    let mut frames = Vec::new();
    while tokio::time::timeout(std::time::Duration::ZERO, rx.recv_batch(&mut frames))
        .await
        .is_ok_and(|n| n > 0)
    {}
    frames
}

#[tokio::test]
async fn a_connection_whose_task_panics_is_detached_and_its_names_freed() {
    let router = Router::new(Config::default());
    let (first, _first_rx) = outbox(1 << 20);
    let unwound = catch_unwind(AssertUnwindSafe(|| {
        let _attached = router.attach(1, peer(), first).expect("no policy");
        router.handle(1, [Frame::register(1, "svc", false)]);
        panic!("the connection's task fails");
    }));
    assert!(unwound.is_err());
    {
        let st = router.lock();
        assert!(!st.conns.contains_key(&1), "the connection is detached");
        assert!(!st.registry.contains("svc"), "its name is free");
    }
    let (second, mut rx) = outbox(1 << 20);
    let _attached = router.attach(2, peer(), second).expect("no policy");
    router.handle(2, [Frame::register(1, "svc", false)]);
    let kinds: Vec<Kind> = queued(&mut rx).await.iter().map(Frame::kind).collect();
    assert_eq!(
        kinds,
        [Kind::Welcome, Kind::Reply],
        "a restarted worker gets the name"
    );
}

#[tokio::test]
async fn a_panic_while_routing_a_frame_answers_it_internal_and_the_rest_goes_on() {
    let router = Router::new(Config::default());
    let (tx, mut rx) = outbox(1 << 20);
    let _attached = router.attach(1, peer(), tx).expect("no policy");
    let frames = [Frame::ping(1, b""), Frame::ping(2, b"")];
    router.handle_with(1, frames, |st: &mut State, conn, frame, now| {
        assert_ne!(frame.id(), 1, "a bug on the first frame");
        st.handle(conn, frame, now);
    });
    assert!(!router.state.is_poisoned(), "the lock is not poisoned");
    let frames = queued(&mut rx).await;
    let seen: Vec<(Kind, u64)> = frames.iter().map(|f| (f.kind(), f.id())).collect();
    assert_eq!(
        seen,
        [(Kind::Welcome, 1), (Kind::Error, 1), (Kind::Pong, 2)],
        "the failed request is answered and the next frame is routed"
    );
    assert_eq!(frames[1].error_code(), ErrorCode::Internal);
    assert!(
        frames[1].string(0).contains("ping"),
        "{}",
        frames[1].string(0)
    );
    router.handle(1, [Frame::ping(3, b"")]);
    assert_eq!(
        queued(&mut rx).await[0].kind(),
        Kind::Pong,
        "still attached"
    );
}
