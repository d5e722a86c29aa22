//! `plexus bench`: measures a running broker — call latency and throughput, publish throughput —
//! next to the physical floor, a raw Unix socket ping-pong of the same frame size.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use plexus_client::{CallContext, Client, FnObject};
use serde_json::{Value, json};

use crate::bus::Global;
use crate::exit::{Failure, OK, TIMEOUT};

/// `plexus bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Sequential calls for the latency figures.
    #[arg(long, default_value_t = 20_000)]
    calls: u64,
    /// Calls for the throughput figure.
    #[arg(long, default_value_t = 200_000)]
    throughput_calls: u64,
    /// Calls in flight at once for the throughput figure.
    #[arg(long, default_value_t = 64)]
    concurrency: u64,
    /// Events for the publish figure.
    #[arg(long, default_value_t = 500_000)]
    events: u64,
    /// Bytes of payload per call and event.
    #[arg(long, default_value_t = 64)]
    payload: usize,
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// Round trips of `frame_len`-byte messages between two threads over a Unix socket pair, with
/// blocking reads and writes: a kernel wake-up each way, as under any bus, and nothing else.
fn socket_floor(frame_len: usize, rounds: u64) -> std::io::Result<Duration> {
    use std::io::{Read, Write};
    let (mut a, mut b) = std::os::unix::net::UnixStream::pair()?;
    let echo = std::thread::spawn(move || {
        let mut buf = vec![0u8; frame_len];
        while b.read_exact(&mut buf).is_ok() {
            if b.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let msg = vec![7u8; frame_len];
    let mut buf = vec![0u8; frame_len];
    let started = Instant::now();
    for _ in 0..rounds {
        a.write_all(&msg)?;
        a.read_exact(&mut buf)?;
    }
    let per_round = started.elapsed() / rounds.max(1) as u32;
    drop(a);
    let _ = echo.join();
    Ok(per_round)
}

/// Runs the benchmark against the bus.
pub async fn bench(args: BenchArgs, g: Global) -> Result<u8, Failure> {
    let worker = g.connect("bench").await?;
    let caller = g.connect("bench").await?;
    let name = format!("bench-{}", std::process::id());
    worker
        .serve_shared(
            &name,
            FnObject(|_m: String, p: Value, _c: CallContext| async move { Ok(p) }),
        )
        .await?;
    let params = json!("x".repeat(args.payload));
    let body = serde_json::to_vec(&params).map_err(plexus_client::Error::from)?;
    let frame_len = plexus_proto::HEADER_LEN + 4 + name.len() + 4 + body.len();

    let rounds = args.calls;
    let floor = tokio::task::spawn_blocking(move || socket_floor(frame_len, rounds))
        .await
        .map_err(|e| Failure::new(crate::exit::INTERNAL, e.to_string()))?
        .map_err(plexus_client::Error::from)?;
    let ping = {
        let started = Instant::now();
        for _ in 0..args.calls {
            caller.ping().await?;
        }
        started.elapsed() / args.calls.max(1) as u32
    };
    let mut latencies = Vec::with_capacity(args.calls as usize);
    for _ in 0..args.calls {
        let started = Instant::now();
        caller
            .call_raw(&name, "echo", &body, Duration::from_secs(10))
            .await?;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let mean = latencies.iter().sum::<Duration>() / latencies.len().max(1) as u32;

    let throughput = call_throughput(
        &caller,
        &name,
        &body,
        args.throughput_calls,
        args.concurrency,
    )
    .await?;
    let (events_per_s, lost) = publish_throughput(&args, &g, &body).await?;

    let figures = json!({
        "payload_bytes": args.payload,
        "socket_floor_rtt_us": micros(floor),
        "broker_ping_rtt_us": micros(ping),
        "call_latency_us": { "mean": micros(mean), "p50": micros(percentile(&latencies, 0.5)), "p99": micros(percentile(&latencies, 0.99)) },
        "calls_per_s": throughput,
        "concurrency": args.concurrency,
        "events_per_s": events_per_s,
        "events_lost": lost,
    });
    if g.json {
        println!("{figures}");
    } else {
        println!(
            "payload {} bytes, frames of {frame_len} bytes",
            args.payload
        );
        println!(
            "socket floor (2 threads, blocking socket)   {:8.1} µs",
            micros(floor)
        );
        println!(
            "ping to the broker (1 hop each way)         {:8.1} µs",
            micros(ping)
        );
        println!(
            "call round trip (2 hops each way)           {:8.1} µs mean, {:.1} p50, {:.1} p99",
            micros(mean),
            micros(percentile(&latencies, 0.5)),
            micros(percentile(&latencies, 0.99))
        );
        println!(
            "calls, {} in flight                        {:8.0} /s",
            args.concurrency, throughput
        );
        println!("events, 1 publisher → 1 subscriber          {events_per_s:8.0} /s ({lost} lost)");
    }
    Ok(OK)
}

async fn call_throughput(
    caller: &Client,
    name: &str,
    body: &[u8],
    total: u64,
    concurrency: u64,
) -> Result<f64, Failure> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (caller, name, body, next) =
            (caller.clone(), name.to_owned(), body.to_vec(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                caller
                    .call_raw(&name, "echo", &body, Duration::from_secs(30))
                    .await?;
            }
            Ok::<(), plexus_client::Error>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| Failure::new(crate::exit::INTERNAL, e.to_string()))??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

async fn publish_throughput(
    args: &BenchArgs,
    g: &Global,
    body: &[u8],
) -> Result<(f64, u64), Failure> {
    let mut builder = Client::builder()
        .name("plexus-bench")
        .reconnect(false)
        .subscription_capacity(args.events as usize + 1);
    if let Some(addr) = &g.bus {
        builder = builder.address(addr.clone());
    }
    let subscriber = builder.connect().await?;
    let publisher = g.connect("bench").await?;
    let topic = format!("bench.{}", std::process::id());
    let mut events = subscriber.subscribe(&topic).await?;
    let total = args.events;
    let started = Instant::now();
    let receiver = tokio::spawn(async move {
        let (mut got, mut lost) = (0u64, 0u64);
        while got + lost < total {
            match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
                Ok(Some(ev)) => {
                    lost += u64::from(ev.dropped);
                    got += 1;
                }
                _ => break,
            }
        }
        (got, lost, started.elapsed())
    });
    for _ in 0..total {
        publisher.publish_raw(&topic, body).await?;
    }
    let (got, lost, elapsed) = receiver
        .await
        .map_err(|e| Failure::new(crate::exit::INTERNAL, e.to_string()))?;
    if got + lost < total {
        return Err(Failure::new(
            TIMEOUT,
            format!("only {got} of {total} events arrived"),
        ));
    }
    drop(subscriber);
    Ok((got as f64 / elapsed.as_secs_f64(), lost))
}
