//! `plexus ping` and `plexus stats`: is the broker there, and what has it done.

use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use crate::bus::{Global, parse_duration, stop_signal};
use crate::exit::{Failure, OK};
use crate::output::{cell, json_text, print_table};

/// `plexus ping`.
#[derive(Args, Debug)]
pub struct PingArgs {
    /// Pings to send; ctrl-c stops early and still prints the summary.
    #[arg(long, short = 'c', default_value_t = 3, value_name = "N")]
    count: u64,
    /// Pause between pings.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    interval: Duration,
}

fn micros(d: &Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Runs `plexus ping`: one line per pong, then the summary (also after ctrl-c).
pub async fn ping(args: PingArgs, g: Global) -> Result<u8, Failure> {
    let client = g.connect("ping").await?;
    let info = client.broker_info().clone();
    if !g.json {
        println!(
            "broker {} at {} (connection {})",
            info.version,
            client.address(),
            info.conn_id
        );
    }
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut times = Vec::new();
    for i in 0..args.count {
        let pause = if i > 0 { args.interval } else { Duration::ZERO };
        let rtt = tokio::select! {
            rtt = async {
                tokio::time::sleep(pause).await;
                client.ping().await
            } => rtt?,
            () = &mut stop => break,
        };
        if g.json {
            println!("{}", json!({ "seq": i + 1, "rtt_us": micros(&rtt) }));
        } else {
            println!("pong {}: {:.1} µs", i + 1, micros(&rtt));
        }
        times.push(rtt);
    }
    let (Some(min), Some(max)) = (times.iter().min(), times.iter().max()) else {
        return Ok(OK);
    };
    let avg = times.iter().sum::<Duration>() / u32::try_from(times.len()).unwrap_or(u32::MAX);
    if g.json {
        println!(
            "{}",
            json!({ "pongs": times.len(), "min_us": micros(min), "avg_us": micros(&avg), "max_us": micros(max) })
        );
    } else {
        println!(
            "{} pong(s), min/avg/max = {:.1}/{:.1}/{:.1} µs",
            times.len(),
            micros(min),
            micros(&avg),
            micros(max)
        );
    }
    Ok(OK)
}

/// `plexus stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {}

/// Adds `value`'s leaves to `rows` as `path value`.
fn flatten(prefix: &str, value: &Value, rows: &mut Vec<Vec<String>>) {
    match value.as_object() {
        Some(map) => {
            for (key, v) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, v, rows);
            }
        }
        None => rows.push(vec![prefix.to_owned(), cell(value)]),
    }
}

/// Runs `plexus stats`: one counter per line, or the broker's JSON.
pub async fn stats(_args: StatsArgs, g: Global) -> Result<u8, Failure> {
    let client = g.connect("stats").await?;
    let raw = client
        .call_raw("plexus", "stats", b"", Duration::from_secs(30))
        .await?;
    if g.json {
        println!("{}", json_text(&raw));
        return Ok(OK);
    }
    let stats: Value = serde_json::from_slice(&raw).map_err(plexus_client::Error::from)?;
    let mut rows = Vec::new();
    flatten("", &stats, &mut rows);
    print_table(&rows);
    Ok(OK)
}
