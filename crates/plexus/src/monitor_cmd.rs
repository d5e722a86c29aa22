//! `plexus monitor [PATTERN]`: every call, answer, error and event the broker routes, with
//! timing, from the broker's `plexus.monitor.*` feed.

use std::collections::HashMap;

use clap::Args;
use plexus_proto::topic_matches;
use serde_json::Value;

use crate::bus::BusArgs;
use crate::exit::{Failure, OK};

/// `plexus monitor [PATTERN]`.
#[derive(Args, Debug)]
pub struct MonitorArgs {
    /// Only traffic whose `object.method` or topic matches (`*` one segment, `>` the rest).
    pattern: Option<String>,
    /// Exit after this many lines.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Print the broker's JSON records, one per line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bus: BusArgs,
}

impl MonitorArgs {
    /// Whether errors go out as JSON.
    pub fn json(&self) -> bool {
        self.json
    }
}

/// What a record is about: `object.method` for calls and their answers, the topic for events.
fn subject(record: &Value, calls: &HashMap<u64, String>) -> Option<String> {
    match record["kind"].as_str()? {
        "call" => Some(format!(
            "{}.{}",
            record["object"].as_str()?,
            record["method"].as_str()?
        )),
        "event" => record["topic"].as_str().map(str::to_owned),
        _ => record["call_id"]
            .as_u64()
            .and_then(|id| calls.get(&id).cloned()),
    }
}

fn line(record: &Value, subject: &str) -> String {
    let ts = record["ts_us"].as_u64().unwrap_or(0);
    let clock = format!(
        "{:02}:{:02}:{:02}.{:06}",
        ts / 3_600_000_000 % 24,
        ts / 60_000_000 % 60,
        ts / 1_000_000 % 60,
        ts % 1_000_000
    );
    let route = format!("{} -> {}", record["from"], record["to"]);
    match record["kind"].as_str().unwrap_or("") {
        "call" => format!(
            "{clock} call   #{} {route} {subject} {}",
            record["call_id"], record["params"]
        ),
        "reply" => format!(
            "{clock} reply  #{} {route} {subject} {} µs {}",
            record["call_id"], record["elapsed_us"], record["result"]
        ),
        "error" if record["from"] == "broker" => {
            format!(
                "{clock} error  request {} broker -> {} {}: {}",
                record["id"],
                record["to"],
                record["code"].as_str().unwrap_or("?"),
                record["message"].as_str().unwrap_or("")
            )
        }
        "error" => format!(
            "{clock} error  #{} {route} {subject} {} µs {}: {}",
            record["call_id"],
            record["elapsed_us"],
            record["code"].as_str().unwrap_or("?"),
            record["message"].as_str().unwrap_or("")
        ),
        "event" => format!(
            "{clock} event  {} {subject} {} -> {} delivered, {} dropped",
            record["from"], record["data"], record["delivered"], record["dropped"]
        ),
        other => format!("{clock} {other} {record}"),
    }
}

/// Runs `plexus monitor` until interrupted or `--count` lines.
pub async fn monitor(args: MonitorArgs) -> Result<u8, Failure> {
    let client = args.bus.connect().await?;
    let mut feed = client.subscribe("plexus.monitor.*").await?;
    if !args.json {
        println!("monitoring {} (ctrl-c to stop)", client.address());
    }
    let mut calls: HashMap<u64, String> = HashMap::new();
    let mut printed = 0u64;
    while args.count.is_none_or(|n| printed < n) {
        let event = tokio::select! {
            e = feed.next() => e,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(event) = event else { break };
        let Ok(record) = event.json::<Value>() else {
            continue;
        };
        let subject = subject(&record, &calls).unwrap_or_default();
        match record["kind"].as_str() {
            Some("call") => {
                if let Some(id) = record["call_id"].as_u64() {
                    calls.insert(id, subject.clone());
                }
            }
            Some("reply" | "error") => {
                if let Some(id) = record["call_id"].as_u64() {
                    calls.remove(&id);
                }
            }
            _ => {}
        }
        if let Some(pattern) = &args.pattern
            && (subject.is_empty() || !topic_matches(pattern, &subject))
        {
            continue;
        }
        if args.json {
            println!("{record}");
        } else {
            println!("{}", line(&record, &subject));
        }
        printed += 1;
    }
    Ok(OK)
}
