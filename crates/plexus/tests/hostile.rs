//! Hostile clients against the real `plexus broker` process (issue 11, "Proving it").
//!
//! Every test starts its own broker process, a well-behaved `plexus echo` worker process and a
//! well-behaved Rust client, then attacks the broker over its real socket. After each hostile
//! act, [`Bus::holds`] checks that the broker process is alive and logged no panic, that its peak
//! resident memory grew less than the bound documented at the act, and that the well-behaved
//! client (connected before the act) and a client connecting now each get an echo call answered
//! within 5 s. `docs/security.md` ("Proving it") says what each test proves.

mod support;

#[path = "hostile/churn.rs"]
mod churn;
#[path = "hostile/deep_json.rs"]
mod deep_json;
#[path = "hostile/floods.rs"]
mod floods;
#[path = "hostile/forgery.rs"]
mod forgery;
#[path = "hostile/garbage.rs"]
mod garbage;
#[path = "hostile/limits.rs"]
mod limits;
#[path = "hostile/slow.rs"]
mod slow;
#[path = "hostile/utf8.rs"]
mod utf8;

use std::future::Future;
use std::time::Duration;

pub use plexus_proto::{ErrorCode, Frame, Kind};
pub use serde_json::Value;
pub use support::bus::{Bus, ECHO};
pub use support::raw::{Conn, Next, clip, error_code, header, ipc_packet, member, pb_packet, wire};
pub use support::{PROMPT, RSS_CEILING_MIB, Rng, WAIT, deep_json};
use tokio::task::JoinHandle;

/// A task reading (and throwing away) everything a connection receives; stopped when dropped.
pub struct Drain(pub JoinHandle<()>);

impl Drain {
    /// Reads `conn` until it closes.
    pub fn start(mut conn: Conn) -> Drain {
        Drain(tokio::spawn(async move {
            while let Next::Got(_) = conn.next_frame(Duration::from_secs(3600)).await {}
        }))
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A native connection subscribed to the broker's monitor feed, reading it all the time.
pub async fn monitor(bus: &Bus) -> Drain {
    let mut m = Conn::hello(bus.socket(), "monitor").await;
    m.subscribe(1, "plexus.monitor.>").await;
    Drain::start(m)
}

/// Waits (up to [`WAIT`]) until a new connection can register `name` exclusively: a name whose
/// owner disconnected must become free, not stay registered to a dead connection.
pub async fn name_becomes_free(bus: &Bus, name: &str, after: &str) {
    if let Err(why) = name_freed(bus, name, after).await {
        panic!("{why}");
    }
}

/// [`name_becomes_free`], telling instead of failing.
pub async fn name_freed(bus: &Bus, name: &str, after: &str) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut c = Conn::hello(bus.socket(), "claimant").await;
        let r = c.request(&Frame::register(1, name, false)).await;
        if r.kind() == Kind::Reply {
            return Ok(());
        }
        if r.kind() != Kind::Error || r.error_code() != ErrorCode::NameTaken {
            return Err(format!(
                "after {after}: registering '{name}' was answered {r:?}"
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "after {after}: '{name}' is still registered {WAIT:?} after its owner disconnected: {}{}",
                r.string(0),
                bus.broker.panic_note()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next frame on `conn` within `wait`, events skipped; fails with `what` (and any panic in
/// the broker's log) if the broker sends nothing.
pub async fn answer_within(bus: &Bus, conn: &mut Conn, wait: Duration, what: &str) -> Frame {
    loop {
        match conn.next_frame(wait).await {
            Next::Got(f) if f.kind() == Kind::Event => continue,
            Next::Got(f) => return f,
            Next::Closed => panic!(
                "{what}: the broker closed the connection without an answer{}",
                bus.broker.panic_note()
            ),
            Next::TimedOut => panic!(
                "{what}: no answer within {wait:?}{}",
                bus.broker.panic_note()
            ),
        }
    }
}

/// [`answer_within`] [`WAIT`].
pub async fn answer_to(bus: &Bus, conn: &mut Conn, what: &str) -> Frame {
    answer_within(bus, conn, WAIT, what).await
}

/// The next NDJSON line on `conn` within `wait`; fails with `what` if none comes.
pub async fn line_within(bus: &Bus, conn: &mut Conn, wait: Duration, what: &str) -> String {
    match conn.next_line(wait).await {
        Next::Got(l) => l,
        Next::Closed => panic!(
            "{what}: the broker closed the NDJSON connection without an answer{}",
            bus.broker.panic_note()
        ),
        Next::TimedOut => panic!(
            "{what}: no NDJSON line within {wait:?}{}",
            bus.broker.panic_note()
        ),
    }
}

/// [`line_within`] [`WAIT`].
pub async fn line_to(bus: &Bus, conn: &mut Conn, what: &str) -> String {
    line_within(bus, conn, WAIT, what).await
}

/// Fails unless `conn` is closed by the broker within [`WAIT`].
pub async fn assert_closed(conn: &mut Conn, what: &str) {
    assert!(
        conn.closed_within(WAIT).await,
        "{what}: the broker kept the connection open"
    );
}

/// Runs every act in its own task, one after the other, and fails at the end with the failure
/// of each act that failed: one broken act does not hide what the others show.
/// Panics the broker logged during a failed act are that act's: the next act is not blamed.
pub async fn run_acts<F>(bus: &Bus, acts: Vec<(String, F)>)
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut failures = Vec::new();
    for (name, act) in acts {
        let result = tokio::spawn(act).await;
        bus.broker.mark_panics_seen();
        if let Err(e) = result {
            let why = match e.try_into_panic() {
                Ok(payload) => payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "a panic without a message".to_owned()),
                Err(e) => e.to_string(),
            };
            if why.starts_with(&name) {
                failures.push(format!("- {why}"));
            } else {
                failures.push(format!("- {name}: {why}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} act(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
