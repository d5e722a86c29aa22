//! `plexus-compare`: runs `plexus bench`'s rpc-latency, rpc-throughput and fanout workloads
//! against a NATS server through async-nats, printing the same JSON objects (`nats MODE URL
//! DURATION`), and prints plexus ÷ NATS ratios of two such outputs (`ratios PLEXUS NATS`).
//! Its worker and subscribers are this program again, as processes of their own.

use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Calls in flight per client, and clients, in rpc-throughput (as in `plexus bench`).
const CLIENTS: usize = 4;
const IN_FLIGHT: usize = 16;
/// Subscriber processes in fanout.
const SUBSCRIBERS: usize = 10;

fn usage() -> ! {
    eprintln!(
        "usage: plexus-compare nats URL SECONDS | ratios PLEXUS.jsonl NATS.jsonl\n\
         (internal: echo-worker URL SUBJECT | subscriber URL SUBJECT)"
    );
    std::process::exit(64)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_else(|| usage());
    match arg(0).as_str() {
        "nats" => {
            let (url, secs) = (arg(1), arg(2).parse::<f64>()?);
            let duration = Duration::from_secs_f64(secs);
            println!("{}", rpc_latency(&url, duration).await?);
            println!("{}", rpc_throughput(&url, duration).await?);
            println!("{}", fanout(&url, duration).await?);
        }
        "ratios" => ratios(&arg(1), &arg(2))?,
        "echo-worker" => echo_worker(&arg(1), &arg(2)).await?,
        "subscriber" => subscriber(&arg(1), &arg(2)).await?,
        _ => usage(),
    }
    Ok(())
}

/// A JSON string of `len` bytes, like `plexus bench`'s params and events.
fn json_string(len: usize) -> Bytes {
    let mut body = vec![b'x'; len];
    body[0] = b'"';
    body[len - 1] = b'"';
    Bytes::from(body)
}

/// This program as a helper process that prints `ready` once serving.
async fn helper(
    args: &[&str],
) -> Result<(
    Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("helper without stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    match lines.next_line().await? {
        Some(l) if l == "ready" => Ok((child, lines)),
        other => Err(format!("helper said {other:?}").into()),
    }
}

/// Exits once stdin ends (the parent is done or gone).
fn exit_with_stdin() {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0)
    });
}

async fn echo_worker(url: &str, subject: &str) -> Result<()> {
    exit_with_stdin();
    let client = async_nats::connect(url).await?;
    let mut requests = client.subscribe(subject.to_owned()).await?;
    client.flush().await?;
    println!("ready");
    while let Some(msg) = requests.next().await {
        if let Some(reply) = msg.reply {
            client.publish(reply, msg.payload).await?;
        }
    }
    Ok(())
}

async fn subscriber(url: &str, subject: &str) -> Result<()> {
    exit_with_stdin();
    let client = async_nats::connect(url).await?;
    let mut events = client.subscribe(subject.to_owned()).await?;
    client.flush().await?;
    println!("ready");
    let mut count = 0u64;
    while let Some(msg) = events.next().await {
        if &msg.payload[..] == b"\"end\"" {
            println!("{count}");
        } else {
            count += 1;
        }
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

async fn rpc_latency(url: &str, duration: Duration) -> Result<Value> {
    let subject = format!("bench.echo.{}", std::process::id());
    let _worker = helper(&["echo-worker", url, &subject]).await?;
    let client = async_nats::connect(url).await?;
    let params = json_string(64);
    let mut samples = Vec::new();
    let started = Instant::now();
    while samples.len() < 20 || started.elapsed() < duration {
        let t = Instant::now();
        client.request(subject.clone(), params.clone()).await?;
        samples.push(t.elapsed());
    }
    samples.sort_unstable();
    Ok(json!({
        "scenario": "rpc-latency", "system": "nats", "calls": samples.len(),
        "p50_us": percentile(&samples, 0.5), "p90_us": percentile(&samples, 0.9),
        "p99_us": percentile(&samples, 0.99), "max_us": percentile(&samples, 1.0),
    }))
}

async fn rpc_throughput(url: &str, duration: Duration) -> Result<Value> {
    let subject = format!("bench.tput.{}", std::process::id());
    let _worker = helper(&["echo-worker", url, &subject]).await?;
    let params = json_string(64);
    let started = Instant::now();
    let mut callers = Vec::new();
    for _ in 0..CLIENTS {
        let client = async_nats::connect(url).await?;
        for _ in 0..IN_FLIGHT {
            let (client, subject, params) = (client.clone(), subject.clone(), params.clone());
            callers.push(tokio::spawn(async move {
                let mut done = 0u64;
                while started.elapsed() < duration {
                    client.request(subject.clone(), params.clone()).await?;
                    done += 1;
                }
                Ok::<u64, async_nats::RequestError>(done)
            }));
        }
    }
    let mut total = 0;
    for caller in callers {
        total += caller.await??;
    }
    Ok(json!({
        "scenario": "rpc-throughput", "system": "nats", "clients": CLIENTS,
        "in_flight": CLIENTS * IN_FLIGHT,
        "calls_per_s": total as f64 / started.elapsed().as_secs_f64(),
    }))
}

async fn fanout(url: &str, duration: Duration) -> Result<Value> {
    let subject = format!("bench.fanout.{}", std::process::id());
    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        subscribers.push(helper(&["subscriber", url, &subject]).await?);
    }
    let client = async_nats::connect(url).await?;
    let event = json_string(64);
    let mut published = 0u64;
    let started = Instant::now();
    while started.elapsed() < duration {
        for _ in 0..64 {
            client.publish(subject.clone(), event.clone()).await?;
        }
        published += 64;
    }
    client
        .publish(subject.clone(), Bytes::from_static(b"\"end\""))
        .await?;
    client.flush().await?;
    let (mut delivered, mut lost) = (0u64, 0u64);
    for (_, lines) in &mut subscribers {
        let line = tokio::time::timeout(duration + Duration::from_secs(30), lines.next_line())
            .await?
            .map_err(|e| format!("subscriber: {e}"))?
            .ok_or("a subscriber exited")?;
        let got: u64 = line.parse()?;
        delivered += got;
        lost += published.saturating_sub(got);
    }
    Ok(json!({
        "scenario": "fanout", "system": "nats", "subscribers": SUBSCRIBERS,
        "event_bytes": event.len(), "published": published,
        "deliveries_per_s": delivered as f64 / started.elapsed().as_secs_f64(), "lost": lost,
    }))
}

/// Prints, per figure both outputs have, plexus, NATS and plexus ÷ NATS.
fn ratios(plexus: &str, nats: &str) -> Result<()> {
    let read = |path: &str| -> Result<Vec<Value>> {
        Ok(std::fs::read_to_string(path)?
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    };
    let (plexus, nats) = (read(plexus)?, read(nats)?);
    println!(
        "{:<16} {:<18} {:>14} {:>14} {:>10}",
        "scenario", "figure", "plexus", "nats", "plexus/nats"
    );
    for (scenario, figures) in [
        ("rpc-latency", &["p50_us", "p90_us", "p99_us"][..]),
        ("rpc-throughput", &["calls_per_s"][..]),
        ("fanout", &["deliveries_per_s", "lost"][..]),
    ] {
        let find = |all: &[Value]| all.iter().find(|o| o["scenario"] == scenario).cloned();
        let (Some(p), Some(n)) = (find(&plexus), find(&nats)) else {
            println!("{scenario:<16} (missing)");
            continue;
        };
        for figure in figures {
            let (a, b) = (
                p[figure].as_f64().unwrap_or(0.0),
                n[figure].as_f64().unwrap_or(0.0),
            );
            let r = if b > 0.0 {
                format!("{:.2}", a / b)
            } else {
                "-".to_owned()
            };
            println!("{scenario:<16} {figure:<18} {a:>14.1} {b:>14.1} {r:>10}");
        }
    }
    Ok(())
}
