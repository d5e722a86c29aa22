//! `plexus listen PATTERN...`: print events as they come.

use std::time::Duration;

use clap::Args;
use plexus_proto::{validate_name, validate_pattern};
use serde_json::json;

use crate::bus::{Global, ReconnectArgs, now_rfc3339, parse_duration, stop_signal};
use crate::exit::{Failure, INVALID_ARGS, OK, TIMEOUT};
use crate::output::json_text;

/// `plexus listen PATTERN...`.
#[derive(Args, Debug)]
pub struct ListenArgs {
    /// Patterns: dot-separated, `*` for one segment, `>` for the rest.
    #[arg(required = true)]
    patterns: Vec<String>,
    /// Exit after N events.
    #[arg(short = 'c', long, value_name = "N")]
    count: Option<u64>,
    /// Join queue group GROUP on each pattern: each event goes to one listener of the group.
    #[arg(short = 'q', long, value_name = "GROUP")]
    queue: Option<String>,
    /// Give up (exit 124) if the events have not come by then.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    #[command(flatten)]
    reconnect: ReconnectArgs,
}

/// Runs `plexus listen`: `TOPIC DATA` per event, or with --json
/// `{"time","topic","data","dropped"}`.
pub async fn listen(args: ListenArgs, g: Global) -> Result<u8, Failure> {
    for pattern in &args.patterns {
        validate_pattern(pattern).map_err(|e| {
            Failure::new(INVALID_ARGS, format!("{pattern:?} is not a pattern: {e}"))
        })?;
    }
    if let Some(group) = &args.queue {
        validate_name(group).map_err(|e| {
            Failure::new(INVALID_ARGS, format!("{group:?} is not a queue group: {e}"))
        })?;
    }
    let (client, mut watch) = g.connect_long("listen", &args.reconnect).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    for pattern in &args.patterns {
        let mut sub = match &args.queue {
            Some(group) => client.subscribe_queue(pattern, group).await?,
            None => client.subscribe(pattern).await?,
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(event) = sub.next().await {
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    let stop = stop_signal();
    tokio::pin!(stop);
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
            () = &mut stop => return Ok(OK),
            failure = watch.failure() => return Err(failure),
        };
        let Some(event) = event else {
            return Err(Failure::new(
                TIMEOUT,
                format!("timeout: {seen} event(s) arrived before the timeout"),
            ));
        };
        let Some(event) = event else {
            return Err(watch.ended().await);
        };
        let data = json_text(&event.payload);
        if g.json {
            println!(
                "{{\"time\":{},\"topic\":{},\"data\":{data},\"dropped\":{}}}",
                json!(now_rfc3339()),
                json!(event.topic),
                event.dropped
            );
        } else {
            if event.dropped > 0 {
                println!("({} event(s) dropped before this one)", event.dropped);
            }
            println!("{} {data}", event.topic);
        }
        seen += 1;
    }
    Ok(OK)
}
