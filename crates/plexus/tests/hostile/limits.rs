//! Running the broker out of connections: its own `max_connections` limit, and the process's
//! file descriptor limit. Bound: 32 MiB.

use super::*;

/// Waits (up to [`WAIT`]) until a new connection's `hello` is answered `welcome` again: slots
/// and descriptors are given back once the broker has seen the old connections close.
async fn accepting_again(bus: &Bus, after: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut c = Conn::connect(bus.socket()).await;
        c.send(&Frame::hello("retry")).await;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_frame(left).await {
            Next::Got(f) if f.kind() == Kind::Welcome => return,
            Next::Got(f) => {
                assert_eq!(
                    error_code(&f),
                    ErrorCode::Overloaded,
                    "after {after}: {f:?}"
                )
            }
            Next::Closed => {}
            Next::TimedOut => panic!("after {after}: no answer to hello within {WAIT:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after {after}: new connections are still refused after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With `--max-connections 40`, connections are opened until one is refused: the refusal is an
/// `error overloaded` frame with id 0 followed by the close, it comes exactly when 40
/// connections (the well-behaved two included) are open, a dialect connection is refused the
/// same way, the well-behaved client's calls go on meanwhile, and once the hogs close, new
/// clients are accepted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_max_connections_are_refused_overloaded() {
    const LIMIT: usize = 40;
    let bus = Bus::start(&["--max-connections", "40"]).await;
    let mut held = Vec::new();
    let (mut refused, refusal) = loop {
        let mut c = Conn::connect(bus.socket()).await;
        c.send(&Frame::hello("hog")).await;
        let f = c.frame().await;
        if f.kind() != Kind::Welcome {
            break (c, f);
        }
        held.push(c);
        assert!(
            held.len() <= LIMIT,
            "{} connections accepted past the limit of {LIMIT}",
            held.len()
        );
    };
    assert_eq!(refusal.id(), 0, "{refusal:?}");
    assert_eq!(
        error_code(&refusal),
        ErrorCode::Overloaded,
        "{}",
        refusal.string(0)
    );
    assert_closed(&mut refused, "the refused connection").await;
    assert_eq!(
        held.len() + 2,
        LIMIT,
        "the refusal came with {} connections open",
        held.len() + 2
    );

    let mut nd = Conn::connect(bus.socket()).await;
    nd.try_send_bytes(b"{\"op\":\"ping\",\"id\":1}\n").await;
    let f = nd.frame().await;
    assert_eq!(
        (f.id(), error_code(&f)),
        (0, ErrorCode::Overloaded),
        "{f:?}"
    );
    assert_closed(&mut nd, "a dialect connection past the limit").await;

    bus.holds_without_new_clients("max_connections connections open", 32)
        .await;
    let refused_count = bus.stats().await["connections_refused"].as_u64();
    assert!(
        matches!(refused_count, Some(n) if n >= 2),
        "stats count refusals: {refused_count:?}"
    );
    drop(held);
    accepting_again(&bus, "the connections at the limit closed").await;
    bus.holds("the connections at the limit closed", 32).await;
}

/// The broker process may open only 64 descriptors (RLIMIT_NOFILE lowered after it started),
/// and 100 connections are opened at it: it stops accepting without failing, the well-behaved
/// client's calls go on meanwhile, and once the hogs close, new clients are accepted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_descriptor_exhaustion() {
    let bus = Bus::start(&[]).await;
    let pid = rustix::process::Pid::from_raw(bus.broker.pid as i32).expect("pid");
    rustix::process::prlimit(
        Some(pid),
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(64),
            maximum: Some(64),
        },
    )
    .expect("lower the broker's descriptor limit");
    let mut hogs = Vec::new();
    for _ in 0..100 {
        let mut c = Conn::connect(bus.socket()).await;
        c.send(&Frame::hello("hog")).await;
        hogs.push(c);
    }
    bus.holds_without_new_clients("100 connections at a broker allowed 64 descriptors", 32)
        .await;
    let open = bus.stats().await["connections"]
        .as_u64()
        .expect("connections");
    assert!(
        open < 102,
        "the broker has {open} connections open: the descriptor limit was never reached, so this test tested nothing"
    );
    drop(hogs);
    accepting_again(&bus, "the connections holding every descriptor closed").await;
    bus.holds("the connections holding every descriptor closed", 32)
        .await;
}
