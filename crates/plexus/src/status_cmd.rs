//! `plexus ping` and `plexus stats`: is the broker there, and what has it done.

use std::time::Duration;

use clap::Args;
use serde_json::Value;

use crate::bus::{BusArgs, parse_duration};
use crate::call_cmd::print_json;
use crate::exit::{Failure, OK};

/// `plexus ping`.
#[derive(Args, Debug)]
pub struct PingArgs {
    /// Pings to send.
    #[arg(long, short = 'c', default_value_t = 3)]
    count: u32,
    /// Pause between pings.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    interval: Duration,
    #[command(flatten)]
    bus: BusArgs,
}

/// Runs `plexus ping`.
pub async fn ping(args: PingArgs) -> Result<u8, Failure> {
    let client = args.bus.connect().await?;
    let info = client.broker_info().clone();
    println!(
        "broker {} at {} (connection {})",
        info.version,
        client.address(),
        info.conn_id
    );
    let mut times = Vec::new();
    for i in 0..args.count {
        if i > 0 {
            tokio::time::sleep(args.interval).await;
        }
        let rtt = client.ping().await?;
        println!("pong {}: {:.1} µs", i + 1, rtt.as_secs_f64() * 1e6);
        times.push(rtt);
    }
    if let (Some(min), Some(max)) = (times.iter().min(), times.iter().max()) {
        let avg = times.iter().sum::<Duration>() / times.len().max(1) as u32;
        let us = |d: &Duration| d.as_secs_f64() * 1e6;
        println!(
            "min/avg/max = {:.1}/{:.1}/{:.1} µs",
            us(min),
            us(&avg),
            us(max)
        );
    }
    Ok(OK)
}

/// `plexus stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Compact JSON on one line.
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    bus: BusArgs,
}

/// Runs `plexus stats`.
pub async fn stats(args: StatsArgs) -> Result<u8, Failure> {
    let client = args.bus.connect().await?;
    let stats: Value = client.call("plexus", "stats", &()).await?;
    print_json(&stats, args.raw);
    Ok(OK)
}
