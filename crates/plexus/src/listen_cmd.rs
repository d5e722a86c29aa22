//! `plexus listen PATTERN...`: print events as they come.

use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use crate::bus::{BusArgs, now_rfc3339, parse_duration};
use crate::exit::{Failure, OK, TIMEOUT};

/// `plexus listen PATTERN...`.
#[derive(Args, Debug)]
pub struct ListenArgs {
    /// Patterns: dot-separated, `*` for one segment, `>` for the rest.
    #[arg(required = true)]
    patterns: Vec<String>,
    /// Exit after this many events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Give up (exit 124) if the events have not come by then.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// One JSON object per line: {"time","topic","data","dropped"}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bus: BusArgs,
}

impl ListenArgs {
    /// Whether errors go out as JSON.
    pub fn json(&self) -> bool {
        self.json
    }
}

/// Runs `plexus listen`.
pub async fn listen(args: ListenArgs) -> Result<u8, Failure> {
    let client = args.bus.connect().await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let mut subs = Vec::new();
    for pattern in &args.patterns {
        let mut sub = client.subscribe(pattern).await?;
        let tx = tx.clone();
        subs.push(tokio::spawn(async move {
            while let Some(event) = sub.next().await {
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut seen = 0u64;
    while args.count.is_none_or(|n| seen < n) {
        let next = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok(),
                None => Some(rx.recv().await),
            }
        };
        let event = tokio::select! {
            e = next => e,
            _ = tokio::signal::ctrl_c() => return Ok(OK),
        };
        let Some(event) = event else {
            return Err(Failure::new(
                TIMEOUT,
                format!("timeout: {seen} event(s) arrived before the timeout"),
            ));
        };
        let Some(event) = event else { return Ok(OK) };
        let data: Value = event.json().unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&event.payload).into_owned())
        });
        if args.json {
            println!(
                "{}",
                json!({ "time": now_rfc3339(), "topic": event.topic, "data": data, "dropped": event.dropped })
            );
        } else {
            if event.dropped > 0 {
                println!("({} event(s) dropped before this one)", event.dropped);
            }
            println!("{} {}", event.topic, data);
        }
        seen += 1;
    }
    Ok(OK)
}
