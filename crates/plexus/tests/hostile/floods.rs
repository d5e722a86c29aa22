//! Floods: answers a client never reads, events a subscriber never reads, huge descriptions,
//! tens of thousands of waiters and hundreds of thousands of subscriptions on one connection.
//!
//! Each hostile writer runs in its own task and is fed until it is done, until the broker stops
//! taking its bytes (no progress for 2 s: the backpressure a correct broker applies), or until
//! the broker's RSS passes [`RSS_CEILING_MIB`] (so that a broken broker fails its test instead
//! of exhausting the machine). The memory bound is then checked while the hostile connection is
//! still open.
//!
//! Each bound is worked out from the limits the broker documents, read from its `plexus.stats`
//! (`outbox_limit`: what a connection's outbox may hold, answers taking it past that by one
//! at most; `max_description_bytes`; `max_subscriptions_per_connection`), plus [`SLACK_MIB`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::*;
use crate::support::process::mem_of;

const MIB: u64 = 1 << 20;

/// What the allocator and the runtime may add to the bytes the broker holds for an act, and what
/// its bookkeeping per connection costs (the well-behaved peers, a read buffer of 64 KiB per
/// connection): every bound adds this to the documented limits. The floods below measure 2 to 5
/// MiB over what their limits allow.
const SLACK_MIB: u64 = 16;

/// The broker's `outbox_limit` in MiB, rounded up (32 MiB by default: twice `max_frame`).
async fn outbox_mib(bus: &Bus) -> u64 {
    bus.limit("outbox_limit").await.div_ceil(MIB)
}

/// A hostile writer feeding the broker from its own task.
struct Flood {
    written: Arc<AtomicU64>,
    chunks: Arc<AtomicU64>,
    ceiling: Arc<AtomicBool>,
    task: JoinHandle<OwnedWriteHalf>,
}

/// How a flood ended.
#[derive(Debug)]
struct Flooded {
    /// Chunks written.
    chunks: u64,
    /// Bytes written.
    bytes: u64,
    /// Whether every chunk was written.
    finished: bool,
    /// Whether the broker's RSS passed the ceiling.
    ceiling: bool,
}

impl Flooded {
    /// For the log.
    fn describe(&self) -> String {
        format!(
            "{} chunks ({} MiB) written{}{}",
            self.chunks,
            self.bytes >> 20,
            if self.finished {
                ", all of them"
            } else {
                "; then the broker took no more"
            },
            if self.ceiling {
                "; stopped at the RSS ceiling"
            } else {
                ""
            },
        )
    }
}

impl Flood {
    /// Writes `chunks` (each with one `write_all`) to `writer`, checking the broker's RSS every
    /// `check_every` chunks.
    fn start(
        mut writer: OwnedWriteHalf,
        chunks: impl Iterator<Item = Vec<u8>> + Send + 'static,
        check_every: u64,
        broker_pid: u32,
    ) -> Flood {
        let written = Arc::new(AtomicU64::new(0));
        let count = Arc::new(AtomicU64::new(0));
        let ceiling = Arc::new(AtomicBool::new(false));
        let task = {
            let (written, count, ceiling) = (written.clone(), count.clone(), ceiling.clone());
            tokio::spawn(async move {
                let mut until_check = 0;
                for chunk in chunks {
                    if until_check == 0 {
                        until_check = check_every;
                        if mem_of(broker_pid).is_some_and(|m| m.rss_kib / 1024 > RSS_CEILING_MIB) {
                            ceiling.store(true, Ordering::SeqCst);
                            break;
                        }
                    }
                    until_check -= 1;
                    if writer.write_all(&chunk).await.is_err() {
                        break;
                    }
                    written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                    count.fetch_add(1, Ordering::SeqCst);
                }
                writer
            })
        };
        Flood {
            written,
            chunks: count,
            ceiling,
            task,
        }
    }

    /// Waits until the flood is over: finished, stalled for 2 s, or stopped at the ceiling.
    async fn settle(&self, total: u64) -> Flooded {
        let mut last = u64::MAX;
        let mut still = 0;
        while !self.task.is_finished() && still < 8 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.written.load(Ordering::SeqCst);
            still = if now == last { still + 1 } else { 0 };
            last = now;
        }
        let chunks = self.chunks.load(Ordering::SeqCst);
        Flooded {
            chunks,
            bytes: self.written.load(Ordering::SeqCst),
            finished: chunks == total,
            ceiling: self.ceiling.load(Ordering::SeqCst),
        }
    }
}

/// Sends `chunks` on a fresh connection (after `hello` when `native`) that never reads, and
/// checks the bus holds (`bound_mib`) while that connection is still open, then after it
/// closes, once the broker has let it go. Every caller's requests ask for more answers than an
/// outbox holds, so the broker must stop reading before the last one. Returns how the flood
/// went.
async fn never_read(
    bus: &Bus,
    native: bool,
    total: u64,
    chunks: impl Iterator<Item = Vec<u8>> + Send + 'static,
    act: &str,
    bound_mib: u64,
) -> Flooded {
    let connections = bus.stats().await["connections"]
        .as_u64()
        .expect("a connection count");
    let conn = if native {
        Conn::hello(bus.socket(), "never-reads").await
    } else {
        Conn::connect(bus.socket()).await
    };
    let (reader, writer): (OwnedReadHalf, OwnedWriteHalf) = conn.stream.into_split();
    let flood = Flood::start(writer, chunks, 1, bus.broker.pid);
    let flooded = flood.settle(total).await;
    eprintln!("[flood] {act}: {}", flooded.describe());
    assert!(
        !flooded.ceiling,
        "{act}: the broker's RSS passed {RSS_CEILING_MIB} MiB; the flood was stopped there ({flooded:?})"
    );
    assert!(
        !flooded.finished,
        "{act}: the broker read every request although none of their answers was read"
    );
    bus.holds(act, bound_mib).await;
    flood.task.abort();
    drop(reader);
    let closed = format!("{act}, then the connection closed");
    bus.await_connections(connections, &closed).await;
    bus.holds(&closed, bound_mib).await;
    flooded
}

/// The bound for a peer that pipelines 1 MiB requests and never reads their 1 MiB answers: the
/// broker stops reading it once the answers fill its outbox, so it holds the outbox
/// (`outbox_limit`), one answer past the limit (1 MiB), and a read buffer holding the next
/// request as it arrives (at most twice its size: 2 MiB), plus [`SLACK_MIB`]. 51 MiB with the
/// defaults; a broker that kept reading would hold all 300 MiB of answers.
async fn one_mib_answers_bound(bus: &Bus) -> u64 {
    outbox_mib(bus).await + 1 + 2 + SLACK_MIB
}

/// 300 pings with 1 MiB payloads, pipelined on a native connection that never reads its pongs.
/// Bound: [`one_mib_answers_bound`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_one_mib_pings_never_read() {
    let bus = Bus::start(&[]).await;
    let bound = one_mib_answers_bound(&bus).await;
    let payload = vec![b'p'; 1 << 20];
    let pings = (0..300u64).map(move |i| Frame::ping(i + 1, &payload).to_bytes().to_vec());
    never_read(
        &bus,
        true,
        300,
        pings,
        "300 pipelined 1 MiB pings never read",
        bound,
    )
    .await;
}

/// The same over NDJSON: 300 `ping` lines with 1 MiB of data each, answers never read.
/// Bound: [`one_mib_answers_bound`] (the 256 KiB of encoded output a dialect connection may have
/// waiting for the socket are within its slack).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_one_mib_ndjson_pings_never_read() {
    let bus = Bus::start(&[]).await;
    let bound = one_mib_answers_bound(&bus).await;
    let data = "p".repeat(1 << 20);
    let lines = (0..300u64)
        .map(move |i| format!("{{\"op\":\"ping\",\"id\":{i},\"data\":\"{data}\"}}\n").into_bytes());
    never_read(
        &bus,
        false,
        300,
        lines,
        "300 pipelined 1 MiB NDJSON pings never read",
        bound,
    )
    .await;
}

/// A native worker serving `name` that answers every call with its params, without parsing
/// them; stopped when dropped.
async fn raw_echo_worker(bus: &Bus, name: &str) -> Drain {
    let mut worker = Conn::hello(bus.socket(), "raw-echo").await;
    worker.register(1, name, false).await;
    Drain(tokio::spawn(async move {
        while let Next::Got(f) = worker.next_frame(Duration::from_secs(3600)).await {
            if f.kind() == Kind::Call {
                worker.send(&Frame::reply(f.id(), &f.payload())).await;
            }
        }
    }))
}

/// 300 calls with 1 MiB params to a worker that echoes them at once, pipelined by a caller that
/// never reads the 1 MiB answers. The caller is no longer read once the replies fill its outbox,
/// but the replies to the calls already routed still arrive (`docs/security.md`, "Answers count"):
/// those are the calls queued for the worker then, at most the worker's `outbox_limit` of them.
/// Bound: the caller's outbox and the worker's (`outbox_limit` each; the second is the replies
/// still on their way), one reply past the limit (1 MiB), a read buffer on each side holding the
/// next 1 MiB call or reply as it arrives (2 × 2 MiB), plus [`SLACK_MIB`]. 85 MiB with the
/// defaults; a broker that kept reading the caller would hold all 300 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_one_mib_calls_never_read() {
    let bus = Bus::start(&[]).await;
    let bound = 2 * outbox_mib(&bus).await + 1 + 2 * 2 + SLACK_MIB;
    let _worker = raw_echo_worker(&bus, "flood.echo").await;
    let params = format!("\"{}\"", "c".repeat(1 << 20));
    let calls = (0..300u64).map(move |i| {
        Frame::call(i + 1, "flood.echo", "echo", 60_000, params.as_bytes())
            .to_bytes()
            .to_vec()
    });
    let act = "300 pipelined 1 MiB calls whose answers are never read";
    never_read(&bus, true, 300, calls, act, bound).await;
}

/// 300,000 one-byte events published, one frame per write, to a native and an NDJSON subscriber
/// that never read. The publisher is never held up by them (every event is taken), the events
/// past their outbox limit are dropped and counted, and the broker's memory stays bounded.
/// Bound: two outboxes (`outbox_limit` each: what an outbox may *hold*, each queued frame
/// counted with its bookkeeping, so the memory a queued event takes is what is bounded, not only
/// its bytes on the wire), the NDJSON subscriber's encoded output waiting for its socket (256
/// KiB, rounded up to 1 MiB), plus [`SLACK_MIB`]: 81 MiB with the defaults. 300,000 events hold
/// more than an outbox once their bookkeeping is counted (about 140 bytes each), so some must be
/// dropped; a broker counting only the 34 bytes on the wire would drop none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_byte_events_to_subscribers_that_never_read() {
    const EVENTS: u64 = 300_000;
    let bus = Bus::start(&[]).await;
    let bound = 2 * outbox_mib(&bus).await + 1 + SLACK_MIB;
    let mut native_sub = Conn::hello(bus.socket(), "sleepy-native").await;
    native_sub.subscribe(1, "flood.>").await;
    let mut nd_sub = Conn::connect(bus.socket()).await;
    nd_sub
        .send_bytes(b"{\"op\":\"subscribe\",\"id\":1,\"pattern\":\"flood.>\"}\n")
        .await;
    let subscribed = line_to(&bus, &mut nd_sub, "NDJSON subscribe").await;
    assert!(subscribed.contains("\"reply\""), "{subscribed}");

    let publisher = Conn::hello(bus.socket(), "flooder").await;
    let (reader, writer) = publisher.stream.into_split();
    let event = Frame::publish(0, "flood.t", b"1", false)
        .to_bytes()
        .to_vec();
    let events = (0..EVENTS).map(move |_| event.clone());
    let flood = Flood::start(writer, events, 1000, bus.broker.pid);
    let flooded = flood.settle(EVENTS).await;
    eprintln!("[flood] 300,000 one-byte events: {}", flooded.describe());
    assert!(
        !flooded.ceiling,
        "the broker's RSS passed {RSS_CEILING_MIB} MiB; the flood was stopped there ({flooded:?})"
    );
    assert!(
        flooded.finished,
        "subscribers that do not read held up the publisher: {flooded:?}"
    );
    let writer = flood.task.await.expect("flood task");
    let mut publisher =
        Conn::from_stream(reader.reunite(writer).expect("the halves of one socket"));
    let before_pong = publisher.sync(1).await;
    assert!(
        before_pong.is_empty(),
        "the publisher was answered {before_pong:?}"
    );
    let act = "300,000 one-byte events to two subscribers that never read";
    bus.holds(act, bound).await;
    let dropped = bus.stats().await["events_dropped"].as_u64().unwrap_or(0);
    assert!(
        dropped > 0,
        "no event was dropped: the subscribers' queues took all 300,000 ({flooded:?})"
    );
    drop((native_sub, nd_sub));
    bus.holds(&format!("{act}, then the subscribers closed"), bound)
        .await;
}

/// A description of `bytes` bytes: an object with a `methods` member and a string member.
fn padded_description(bytes: usize) -> String {
    format!(
        "{{\"methods\":{{\"m\":{{}}}},\"pad\":\"{}\"}}",
        "d".repeat(bytes)
    )
}

/// A description of about `bytes` bytes made of many tiny members (`{"a0":0,"a1":0,...}`),
/// which costs far more to hold as a parsed JSON value than as text.
fn many_members_description(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 32);
    s.push_str("{\"methods\":{}");
    let mut i = 0u64;
    while s.len() < bytes {
        s.push_str(&format!(",\"a{i}\":0"));
        i += 1;
    }
    s.push('}');
    s
}

/// Registers `name` with `description` on `conn`; whether the broker accepted it. A refusal must
/// be `invalid_params` naming `max_description_bytes`.
async fn register_described(
    bus: &Bus,
    conn: &mut Conn,
    id: u64,
    name: &str,
    description: &str,
) -> bool {
    let frame = Frame::build(Kind::Register, id, 0, 0, &[name], description.as_bytes());
    conn.send(&frame).await;
    let answer = answer_to(
        bus,
        conn,
        &format!("register {name} with a large description"),
    )
    .await;
    assert_eq!(answer.id(), id, "{answer:?}");
    if answer.kind() == Kind::Reply {
        return true;
    }
    assert_eq!(error_code(&answer), ErrorCode::InvalidParams, "{answer:?}");
    assert!(
        answer.string(0).contains("max_description_bytes"),
        "a refused description is refused naming the limit: {}",
        answer.string(0)
    );
    false
}

/// Fails the test unless registering `name` with `description` (over `max_description_bytes`)
/// was refused `invalid_params` naming the limit.
async fn refused_description(bus: &Bus, conn: &mut Conn, id: u64, name: &str, description: &str) {
    let max = bus.limit("max_description_bytes").await;
    assert!(
        !register_described(bus, conn, id, name, description).await,
        "a {}-byte description was kept, over max_description_bytes = {max}",
        description.len()
    );
}

/// 40 names registered with 8 MiB descriptions each (320 MiB if all were kept): each is refused
/// `invalid_params` naming `max_description_bytes` (64 KiB by default) and nothing is kept.
/// Bound: the read buffer holding one 8 MiB frame (at most twice its size, as it doubles while
/// the frame arrives: 16 MiB) plus [`SLACK_MIB`]: 32 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_8_mib_descriptions() {
    let bus = Bus::start(&[]).await;
    let mut owner = Conn::hello(bus.socket(), "describer").await;
    let big = padded_description(8 << 20);
    for i in 0..40u64 {
        if bus.broker.rss_mib() > RSS_CEILING_MIB {
            panic!("the broker's RSS passed {RSS_CEILING_MIB} MiB after {i} descriptions");
        }
        let name = format!("huge.desc.n{i}");
        refused_description(&bus, &mut owner, i + 1, &name, &big).await;
    }
    assert_eq!(
        bus.stats().await["names"].as_u64(),
        Some(1),
        "only the echo worker's name is registered"
    );
    bus.holds(
        "40 registrations with 8 MiB descriptions",
        2 * 8 + SLACK_MIB,
    )
    .await;
}

/// One name registered with a 15 MiB description made of two million tiny members, which would
/// take several times its size once parsed: it is refused by its size, before it is parsed.
/// Bound: the read buffer holding the 15 MiB frame (at most twice its size: 30 MiB) plus
/// [`SLACK_MIB`]: 46 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn description_of_two_million_members() {
    let bus = Bus::start(&[]).await;
    let mut owner = Conn::hello(bus.socket(), "describer").await;
    let many = many_members_description(15 << 20);
    refused_description(&bus, &mut owner, 1, "huge.desc.members", &many).await;
    bus.holds(
        "a 15 MiB description of two million members",
        2 * 15 + SLACK_MIB,
    )
    .await;
}

/// A description of exactly `bytes` bytes (at least 29), padded as [`padded_description`].
fn description_of(bytes: usize) -> String {
    let frame = padded_description(0).len();
    let description = padded_description(bytes - frame);
    assert_eq!(description.len(), bytes);
    description
}

/// `plexus.introspect` of the largest description the broker keeps, called by a client that
/// never reads until the answers would add up to 800 MiB. One byte over `max_description_bytes`
/// (64 KiB by default) is refused `invalid_params` naming the limit, and the name is not
/// registered; exactly the limit is kept, and that is what is fetched. The answers count in the
/// caller's outbox like any answer, so the broker stops reading the caller once they fill it.
/// Bound: the outbox (`outbox_limit`), one answer past it and the description kept (64 KiB
/// each, rounded up to 1 MiB together), plus [`SLACK_MIB`]: 49 MiB with the defaults; a broker
/// that kept reading would hold 800 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_description_introspected_never_read() {
    let bus = Bus::start(&[]).await;
    let max = usize::try_from(bus.limit("max_description_bytes").await).expect("fits");
    let bound = outbox_mib(&bus).await + 1 + SLACK_MIB;
    let mut owner = Conn::hello(bus.socket(), "describer").await;

    let over = "huge.desc.over";
    let frame = Frame::build(
        Kind::Register,
        1,
        0,
        0,
        &[over],
        description_of(max + 1).as_bytes(),
    );
    let refused = owner.request(&frame).await;
    assert_eq!(
        error_code(&refused),
        ErrorCode::InvalidParams,
        "{refused:?}"
    );
    assert!(
        refused
            .string(0)
            .contains(&format!("max_description_bytes = {max}")),
        "the refusal names the limit: {}",
        refused.string(0)
    );
    let params = format!("\"{over}\"");
    let gone = owner
        .request(&Frame::call(
            2,
            "plexus",
            "introspect",
            0,
            params.as_bytes(),
        ))
        .await;
    assert_eq!(
        error_code(&gone),
        ErrorCode::NoSuchObject,
        "a name whose description was refused is not registered: {gone:?}"
    );

    let name = "huge.desc.largest";
    assert!(
        register_described(&bus, &mut owner, 3, name, &description_of(max)).await,
        "a description of exactly max_description_bytes ({max}) is kept"
    );
    let params = format!("\"{name}\"");
    let answer = owner
        .request(&Frame::call(
            4,
            "plexus",
            "introspect",
            0,
            params.as_bytes(),
        ))
        .await;
    assert_eq!(answer.kind(), Kind::Reply, "{answer:?}");
    let payload = String::from_utf8(answer.payload().to_vec()).expect("JSON");
    assert_eq!(
        member(&payload, "description").len(),
        max,
        "introspect returns the description as it was sent"
    );

    let calls = (800u64 << 20) / max as u64;
    let frames = (0..calls).map(move |i| {
        Frame::call(i + 1, "plexus", "introspect", 0, params.as_bytes())
            .to_bytes()
            .to_vec()
    });
    let act = format!("{calls} introspect calls of a {max}-byte description, never read");
    never_read(&bus, true, calls, frames, &act, bound).await;
}

/// The answers to a batch of requests, counted.
#[derive(Debug, Default)]
struct Answers {
    replies: u64,
    overloaded: u64,
    other: u64,
    /// The message of the first `overloaded` answer.
    first_overloaded: Option<String>,
}

/// Sends `frames` and then a ping with `sync_id`, reading the answers as they come (the broker
/// stops reading a peer whose unread answers fill its outbox), and counts those before the
/// ping's (its pong, or its own error if the ping is refused too).
async fn count_answers(conn: &mut Conn, frames: Vec<Frame>, sync_id: u64) -> Answers {
    let mut chunks = Vec::new();
    let mut batch = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        batch.extend_from_slice(&f.to_bytes());
        if i % 1000 == 999 {
            chunks.push(std::mem::take(&mut batch));
        }
    }
    batch.extend_from_slice(&Frame::ping(sync_id, b"").to_bytes());
    chunks.push(batch);
    let mut answers = Answers::default();
    conn.pipeline(chunks, |f| {
        if f.id() == sync_id {
            return true;
        }
        match f.kind() {
            Kind::Reply => answers.replies += 1,
            Kind::Error if f.error_code() == ErrorCode::Overloaded => {
                answers.overloaded += 1;
                if answers.first_overloaded.is_none() {
                    answers.first_overloaded = Some(f.string(0).to_owned());
                }
            }
            Kind::Error => answers.other += 1,
            _ => {}
        }
        false
    })
    .await;
    answers
}

/// 70,000 `plexus.wait_for` calls for a name nobody registers, on one native connection and on
/// one NDJSON connection: past the per-connection limit on open requests (65,536, the
/// broker's `max_pending_per_connection`) each is answered `overloaded` at once, so at least
/// 4,464 are. Bound: 64 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seventy_thousand_wait_for_waiters() {
    const WAITERS: u64 = 70_000;
    const MAX_PENDING: u64 = 65_536;
    let bus = Bus::start(&[]).await;
    let params = br#"{"names":["never.registered"],"timeout_ms":60000}"#;

    let mut nd = Conn::connect(bus.socket()).await;
    let mut lines = String::new();
    for i in 1..=WAITERS {
        lines.push_str(&format!(
            "{{\"op\":\"wait_for\",\"id\":{i},\"names\":[\"never.registered\"],\"timeout_ms\":60000}}\n"
        ));
    }
    lines.push_str("{\"op\":\"ping\",\"id\":0}\n");
    nd.send_bytes(lines.as_bytes()).await;
    let mut nd_overloaded = 0u64;
    loop {
        let line = line_to(&bus, &mut nd, "NDJSON wait_for flood").await;
        if member(&line, "id") == "0" {
            break;
        }
        if line.contains("overloaded") {
            nd_overloaded += 1;
        }
    }
    eprintln!("[waiters] NDJSON: {nd_overloaded} of {WAITERS} wait_for answered overloaded");
    bus.holds("70,000 NDJSON wait_for waiters", 64).await;

    let mut native = Conn::hello(bus.socket(), "waiter").await;
    let frames = (1..=WAITERS)
        .map(|i| Frame::call(i, "plexus", "wait_for", 60_000, params))
        .collect();
    let Answers {
        replies,
        overloaded,
        other,
        ..
    } = count_answers(&mut native, frames, 1 << 40).await;
    eprintln!(
        "[waiters] native: {overloaded} of {WAITERS} wait_for answered overloaded ({replies} replies, {other} other errors)"
    );
    bus.holds("70,000 native wait_for waiters", 64).await;
    assert!(
        nd_overloaded >= WAITERS - MAX_PENDING,
        "NDJSON: only {nd_overloaded} of {WAITERS} waiters were refused"
    );
    assert!(
        overloaded >= WAITERS - MAX_PENDING,
        "native: only {overloaded} of {WAITERS} waiters were refused overloaded; the broker keeps every wait_for open"
    );
}

/// 300,000 subscriptions to `>` on one connection, sent without waiting for their answers (which
/// are read as they come), then an event published by the well-behaved client, which fans out to
/// each accepted subscription: exactly `max_subscriptions_per_connection` (10,000 by default)
/// are accepted, every one past it is refused `overloaded` naming the limit, and the publish is
/// acknowledged within 5 s as delivered to each accepted one. Bound: the hog's outbox
/// (`outbox_limit`: its answers, when it reads them slower than they come), its subscriptions
/// (about 100 bytes each and the pattern: 1 MiB), plus [`SLACK_MIB`]: 49 MiB with the defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_thousand_subscriptions_on_one_connection() {
    const SUBS: u64 = 300_000;
    let bus = Bus::start(&[]).await;
    let per_connection = bus.limit("max_subscriptions_per_connection").await;
    let bound = outbox_mib(&bus).await + 1 + SLACK_MIB;
    let mut hog = Conn::hello(bus.socket(), "subscription-hog").await;
    let frames = (1..=SUBS).map(|i| Frame::subscribe(i, ">")).collect();
    let answers = count_answers(&mut hog, frames, 1 << 40).await;
    eprintln!("[subscriptions] {SUBS} subscriptions answered: {answers:?}");
    assert_eq!(
        (answers.replies, answers.overloaded, answers.other),
        (per_connection, SUBS - per_connection, 0),
        "(accepted, refused overloaded, refused otherwise) of {SUBS} subscriptions, at max_subscriptions_per_connection = {per_connection}"
    );
    let refusal = answers.first_overloaded.unwrap_or_default();
    assert!(
        refusal.contains(&format!(
            "max_subscriptions_per_connection = {per_connection}"
        )),
        "the refusal names the limit: {refusal}"
    );
    let publish = bus.client.publish_acked("any.topic", &1);
    let delivery = tokio::time::timeout(PROMPT, publish)
        .await
        .expect("a publish is acknowledged within the prompt wait")
        .expect("publish");
    eprintln!("[subscriptions] one publish: {delivery:?}");
    assert_eq!(
        (delivery.delivered, delivery.dropped),
        (per_connection, 0),
        "the event reaches every accepted subscription"
    );
    let act = "300,000 '>' subscriptions on one connection and an event to them";
    bus.holds(act, bound).await;
    assert_eq!(
        bus.stats().await["subscriptions"].as_u64(),
        Some(per_connection),
        "the broker holds the accepted subscriptions only"
    );
}
