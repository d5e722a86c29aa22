//! Floods: answers a client never reads, events a subscriber never reads, huge descriptions,
//! tens of thousands of waiters and hundreds of thousands of subscriptions on one connection.
//!
//! Each hostile writer runs in its own task and is fed until it is done, until the broker stops
//! taking its bytes (no progress for 2 s: the backpressure a correct broker applies), or until
//! the broker's RSS passes [`RSS_CEILING_MIB`] (so that a broken broker fails its test instead
//! of exhausting the machine). The memory bound is then checked while the hostile connection is
//! still open.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::*;
use crate::support::process::mem_of;

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
/// closes. Returns how the flood went.
async fn never_read(
    bus: &Bus,
    native: bool,
    total: u64,
    chunks: impl Iterator<Item = Vec<u8>> + Send + 'static,
    act: &str,
    bound_mib: u64,
) -> Flooded {
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
    bus.holds(act, bound_mib).await;
    flood.task.abort();
    drop(reader);
    bus.holds(&format!("{act}, then the connection closed"), bound_mib)
        .await;
    flooded
}

/// 300 pings with 1 MiB payloads, pipelined on a native connection that never reads its pongs.
/// Bound: 64 MiB — the outbox limit (8 MiB) plus a frame-sized read buffer (16 MiB) plus slack:
/// a broker that stops reading a peer whose answers pile up holds no more than that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_one_mib_pings_never_read() {
    let bus = Bus::start(&[]).await;
    let payload = vec![b'p'; 1 << 20];
    let pings = (0..300u64).map(move |i| Frame::ping(i + 1, &payload).to_bytes().to_vec());
    never_read(
        &bus,
        true,
        300,
        pings,
        "300 pipelined 1 MiB pings never read",
        64,
    )
    .await;
}

/// The same over NDJSON: 300 `ping` lines with 1 MiB of data each, answers never read.
/// Bound: 64 MiB, as for native pings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_one_mib_ndjson_pings_never_read() {
    let bus = Bus::start(&[]).await;
    let data = "p".repeat(1 << 20);
    let lines = (0..300u64)
        .map(move |i| format!("{{\"op\":\"ping\",\"id\":{i},\"data\":\"{data}\"}}\n").into_bytes());
    never_read(
        &bus,
        false,
        300,
        lines,
        "300 pipelined 1 MiB NDJSON pings never read",
        64,
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
/// never reads the 1 MiB answers. Bound: 64 MiB, as for pings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_one_mib_calls_never_read() {
    let bus = Bus::start(&[]).await;
    let _worker = raw_echo_worker(&bus, "flood.echo").await;
    let params = format!("\"{}\"", "c".repeat(1 << 20));
    let calls = (0..300u64).map(move |i| {
        Frame::call(i + 1, "flood.echo", "echo", 60_000, params.as_bytes())
            .to_bytes()
            .to_vec()
    });
    let act = "300 pipelined 1 MiB calls whose answers are never read";
    never_read(&bus, true, 300, calls, act, 64).await;
}

/// 300,000 one-byte events published, one frame per write, to a native and an NDJSON subscriber
/// that never read. The publisher is never held up by them (every event is taken), the events
/// past their outbox limit are dropped and counted, and the broker's memory stays bounded.
/// Bound: 32 MiB — two outboxes of 8 MiB (`outbox_limit`: "bytes a connection's outbox may
/// hold") plus 16 MiB of slack; the memory a queued event takes is what must be bounded, not
/// only its bytes on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_byte_events_to_subscribers_that_never_read() {
    const EVENTS: u64 = 300_000;
    let bus = Bus::start(&[]).await;
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
    bus.holds(act, 32).await;
    let dropped = bus.stats().await["events_dropped"].as_u64().unwrap_or(0);
    assert!(
        dropped > 0,
        "no event was dropped: the subscribers' queues took all 300,000 ({flooded:?})"
    );
    drop((native_sub, nd_sub));
    bus.holds(&format!("{act}, then the subscribers closed"), 32)
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

/// Registers `name` with `description` on `conn`; whether the broker accepted it (an error
/// answer, e.g. a size limit, is a refusal).
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
    answer.kind() == Kind::Reply
}

/// 40 names registered with 8 MiB descriptions each (320 MiB if all were kept). Bound: 128 MiB
/// — a broker that bounds what it keeps per description or per connection holds far less.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_8_mib_descriptions() {
    let bus = Bus::start(&[]).await;
    let mut owner = Conn::hello(bus.socket(), "describer").await;
    let big = padded_description(8 << 20);
    let mut accepted = 0;
    for i in 0..40u64 {
        if bus.broker.rss_mib() > RSS_CEILING_MIB {
            panic!("the broker's RSS passed {RSS_CEILING_MIB} MiB after {i} descriptions");
        }
        let name = format!("huge.desc.n{i}");
        if register_described(&bus, &mut owner, i + 1, &name, &big).await {
            accepted += 1;
        }
    }
    eprintln!("[descriptions] {accepted} of 40 8 MiB descriptions accepted");
    bus.holds("40 registrations with 8 MiB descriptions", 128)
        .await;
}

/// One name registered with a 15 MiB description made of two million tiny members, which takes
/// several times its size once parsed. Bound: 128 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn description_of_two_million_members() {
    let bus = Bus::start(&[]).await;
    let mut owner = Conn::hello(bus.socket(), "describer").await;
    let many = many_members_description(15 << 20);
    let took = register_described(&bus, &mut owner, 1, "huge.desc.members", &many).await;
    eprintln!("[descriptions] a 15 MiB description of tiny members accepted: {took}");
    bus.holds("a 15 MiB description of two million members", 128)
        .await;
}

/// The largest description the broker keeps (8 MiB, else 1 MiB, 64 KiB or 4 KiB) is fetched
/// with `plexus.introspect` by a client that never reads the answers, until they would add up
/// to 800 MiB. Bound: 128 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_description_introspected_never_read() {
    let bus = Bus::start(&[]).await;
    let mut owner = Conn::hello(bus.socket(), "describer").await;
    let mut target = None;
    for (i, size) in [8usize << 20, 1 << 20, 64 << 10, 4 << 10]
        .into_iter()
        .enumerate()
    {
        let name = format!("huge.desc.s{size}");
        if register_described(
            &bus,
            &mut owner,
            i as u64 + 1,
            &name,
            &padded_description(size),
        )
        .await
        {
            target = Some((name, size));
            break;
        }
    }
    let (name, size) = target.expect("the broker keeps a 4 KiB description");
    let calls = ((800u64 << 20) / size as u64).min(100_000);
    let params = format!("\"{name}\"");
    let frames = (0..calls).map(move |i| {
        Frame::call(i + 1, "plexus", "introspect", 0, params.as_bytes())
            .to_bytes()
            .to_vec()
    });
    let act = format!("{calls} introspect calls of a {size}-byte description, never read");
    never_read(&bus, true, calls, frames, &act, 128).await;
}

/// Sends `frames` and then a ping with `sync_id`, and counts the answers before the ping's
/// (its pong, or its own error if the ping is refused too): (replies, overloaded errors, other
/// errors).
async fn count_answers(conn: &mut Conn, frames: Vec<Frame>, sync_id: u64) -> (u64, u64, u64) {
    let mut batch = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        batch.extend_from_slice(&f.to_bytes());
        if i % 1000 == 999 {
            conn.send_bytes(&batch).await;
            batch.clear();
        }
    }
    batch.extend_from_slice(&Frame::ping(sync_id, b"").to_bytes());
    conn.send_bytes(&batch).await;
    let (mut replies, mut overloaded, mut other) = (0, 0, 0);
    loop {
        let f = conn.frame().await;
        if f.id() == sync_id {
            return (replies, overloaded, other);
        }
        match f.kind() {
            Kind::Reply => replies += 1,
            Kind::Error if f.error_code() == ErrorCode::Overloaded => overloaded += 1,
            Kind::Error => other += 1,
            _ => {}
        }
    }
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
    let (replies, overloaded, other) = count_answers(&mut native, frames, 1 << 40).await;
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

/// 300,000 subscriptions to `>` on one connection, then an event published by the well-behaved
/// client (which fans out to each accepted subscription): the broker refuses subscriptions past
/// a per-connection limit, the publish is acknowledged within 5 s, and memory stays bounded.
/// Bound: 64 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_thousand_subscriptions_on_one_connection() {
    const SUBS: u64 = 300_000;
    let bus = Bus::start(&[]).await;
    let mut hog = Conn::hello(bus.socket(), "subscription-hog").await;
    let frames = (1..=SUBS).map(|i| Frame::subscribe(i, ">")).collect();
    let (accepted, overloaded, other) = count_answers(&mut hog, frames, 1 << 40).await;
    eprintln!(
        "[subscriptions] {accepted} of {SUBS} accepted, {overloaded} refused overloaded, {other} refused otherwise"
    );
    let publish = bus.client.publish_acked("any.topic", &1);
    let delivery = tokio::time::timeout(PROMPT, publish)
        .await
        .expect("a publish is acknowledged within the prompt wait")
        .expect("publish");
    eprintln!("[subscriptions] one publish: {delivery:?}");
    let act = "300,000 '>' subscriptions on one connection and an event to them";
    bus.holds(act, 64).await;
    assert!(
        overloaded + other > 0,
        "all {SUBS} subscriptions were accepted: the broker bounds none per connection"
    );
}
