//! A bus under attack: the broker process, a well-behaved `plexus echo` worker process, and a
//! well-behaved Rust client connected before the attack; and the check made after each hostile
//! act that the bus still holds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use plexus_client::Client;
use serde_json::Value;

use super::process::{BrokerProc, EchoProc, Mem};
use super::{PROMPT, WAIT};

/// The name the well-behaved echo worker serves.
pub const ECHO: &str = "wellbehaved.echo";

/// The broker, an echo worker and a client, all well-behaved.
pub struct Bus {
    /// The broker process.
    pub broker: BrokerProc,
    /// A client connected before any hostile act.
    pub client: Client,
    /// The broker's memory once the well-behaved peers were connected.
    pub baseline: Mem,
    _echo: EchoProc,
    nonce: AtomicU64,
}

impl Bus {
    /// Starts `plexus broker ARGS`, a `plexus echo` worker and a client, and records the broker's
    /// memory.
    pub async fn start(args: &[&str]) -> Bus {
        let broker = BrokerProc::start(args);
        let echo = EchoProc::start(&broker.addr(), ECHO, false);
        let client = Client::builder()
            .address(broker.addr())
            .name("wellbehaved")
            .reconnect(false)
            .connect()
            .await
            .expect("the well-behaved client connects");
        client
            .wait_for(&[ECHO], WAIT)
            .await
            .expect("the echo worker registers");
        let bus = Bus {
            baseline: broker.mem(),
            broker,
            client,
            _echo: echo,
            nonce: AtomicU64::new(0),
        };
        bus.echo_call(&bus.client, "before any hostile act").await;
        bus
    }

    /// The socket path.
    pub fn socket(&self) -> &std::path::Path {
        &self.broker.socket
    }

    /// A call through `client` to the echo worker, which must come back with its params within
    /// [`PROMPT`].
    pub async fn echo_call(&self, client: &Client, after: &str) {
        let n = self.nonce.fetch_add(1, Ordering::Relaxed);
        let params = format!("\"nonce-{n}\"");
        let call = client.call_raw(ECHO, "echo", params.as_bytes(), PROMPT);
        match tokio::time::timeout(PROMPT + Duration::from_secs(1), call).await {
            Ok(Ok(result)) => assert_eq!(
                &result[..],
                params.as_bytes(),
                "after {after}: the echo call came back with another result"
            ),
            Ok(Err(e)) => panic!("after {after}: a well-behaved call failed: {e}"),
            Err(_) => panic!("after {after}: a well-behaved call got no answer within {PROMPT:?}"),
        }
    }

    /// A new well-behaved client connects and its call succeeds, all within [`PROMPT`].
    pub async fn fresh_call(&self, after: &str) {
        let connect = Client::builder()
            .address(self.broker.addr())
            .name("fresh")
            .reconnect(false)
            .connect();
        let client = match tokio::time::timeout(PROMPT, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => panic!("after {after}: a new client cannot connect: {e}"),
            Err(_) => panic!("after {after}: a new client did not connect within {PROMPT:?}"),
        };
        self.echo_call(&client, after).await;
    }

    /// Fails the test unless, after the act `after`: the broker process is alive and its log
    /// shows no panic, its peak memory (`VmHWM`) grew less than `bound_mib` over the baseline,
    /// the client connected before the act still gets an echo call answered within [`PROMPT`],
    /// and so does a client that connects now. Returns the peak growth in MiB.
    pub async fn holds(&self, after: &str, bound_mib: u64) -> u64 {
        let growth = self.holds_without_new_clients(after, bound_mib).await;
        self.fresh_call(after).await;
        growth
    }

    /// [`Bus::holds`] without the new client (for when new connections are meant to be
    /// refused).
    pub async fn holds_without_new_clients(&self, after: &str, bound_mib: u64) -> u64 {
        self.broker.assert_alive(after);
        let growth = self.assert_memory(after, bound_mib);
        self.echo_call(&self.client, after).await;
        self.broker.assert_alive(after);
        growth
    }

    /// Fails the test if the broker's peak memory grew by `bound_mib` or more over the baseline;
    /// returns the growth in MiB. Every measurement is printed (see `--nocapture`).
    pub fn assert_memory(&self, after: &str, bound_mib: u64) -> u64 {
        let now = self.broker.mem();
        let growth = now.hwm_kib.saturating_sub(self.baseline.rss_kib) / 1024;
        eprintln!(
            "[memory] after {after}: baseline RSS {} MiB, RSS now {} MiB, peak {} MiB; peak growth {growth} MiB (bound {bound_mib} MiB)",
            self.baseline.rss_kib / 1024,
            now.rss_kib / 1024,
            now.hwm_kib / 1024,
        );
        assert!(
            growth < bound_mib,
            "after {after}: the broker's peak RSS grew {growth} MiB over its baseline of {} MiB (bound {bound_mib} MiB)",
            self.baseline.rss_kib / 1024
        );
        growth
    }

    /// The broker's `plexus.stats`.
    pub async fn stats(&self) -> Value {
        tokio::time::timeout(PROMPT, self.client.call("plexus", "stats", &Value::Null))
            .await
            .expect("stats within the prompt wait")
            .expect("stats")
    }

    /// The broker's limit `key` (a config-file key) as `plexus.stats` shows it under `limits`.
    pub async fn limit(&self, key: &str) -> u64 {
        let stats = self.stats().await;
        stats["limits"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("no limit {key} in plexus.stats: {}", stats["limits"]))
    }

    /// Waits (up to [`WAIT`]) until `plexus.stats` shows `connections`; fails the test with
    /// the last count otherwise.
    pub async fn await_connections(&self, connections: u64, after: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let now = self.stats().await["connections"]
                .as_u64()
                .unwrap_or(u64::MAX);
            if now == connections {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "after {after}: the broker still counts {now} connections, not {connections}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
