//! `plexus publish`: publish an event, N times, or one per line of stdin.

use clap::Args;
use plexus_client::Client;
use plexus_proto::validate_topic;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::bus::Global;
use crate::exit::{Failure, INVALID_ARGS, OK};
use crate::params::{self, Bare};

/// `plexus publish TOPIC [BODY...]`.
#[derive(Args, Debug)]
#[command(after_help = PUBLISH_HELP)]
pub struct PublishArgs {
    /// The topic: dot-separated segments, no wildcards.
    topic: String,
    /// The event body (see below); `-` publishes each line of stdin as an event.
    #[arg(allow_negative_numbers = true)]
    body: Vec<String>,
    /// Publish each line of stdin as an event, as `-` does.
    #[arg(long, conflicts_with = "body")]
    lines: bool,
    /// Publish N events: the body N times, or at most N lines.
    #[arg(short = 'c', long, value_name = "N")]
    count: Option<u64>,
    /// Wait for the broker's count of the subscriptions each event reached, and print the sum.
    #[arg(long)]
    ack: bool,
}

const PUBLISH_HELP: &str = "\
The body takes the forms `plexus call` takes for params (key=value strings, key:=json, one JSON
value, @file, a signature), and also one word of text: `plexus publish sensor.temp 25.6°C`
publishes the string \"25.6°C\", `plexus publish sensor.temp 42` the number 42 (a word that is
JSON is JSON; quote text that looks like JSON: '\"42\"'). No body publishes null.
With - or --lines each line of stdin is one event: JSON if the line is JSON, else its text.";

/// What the broker's acknowledgements add up (printed with `--ack`).
#[derive(Default)]
struct Acks {
    events: u64,
    delivered: u64,
    dropped: u64,
}

/// Refuses a topic with wildcards (they are for subscribing) or bad segments, saying why.
fn check_topic(topic: &str) -> Result<(), Failure> {
    if topic.split('.').any(|s| s == "*" || s == ">") {
        return Err(Failure::new(
            INVALID_ARGS,
            format!(
                "{topic:?} has a wildcard; wildcards are for subscribing (`plexus listen \
                 '{topic}'`): publish on a topic without * or >"
            ),
        ));
    }
    validate_topic(topic)
        .map_err(|e| Failure::new(INVALID_ARGS, format!("{topic:?} is not a topic: {e}")))
}

/// Runs `plexus publish`.
pub async fn publish(args: PublishArgs, g: Global) -> Result<u8, Failure> {
    check_topic(&args.topic)?;
    let lines = args.lines || args.body == ["-"];
    let body = if lines {
        None
    } else {
        Some(params::parse(&args.body, Bare::Text)?.unwrap_or_else(params::null))
    };
    let client = g.connect("publish").await?;
    let mut acks = Acks::default();
    let limit = args.count.unwrap_or(if lines { u64::MAX } else { 1 });
    match body {
        Some(body) => {
            for _ in 0..limit {
                send(&client, &args, &body, &mut acks).await?;
            }
        }
        None => {
            let mut stdin = stdin_lines();
            while acks.events < limit {
                let Some(line) = stdin.recv().await else {
                    break;
                };
                let line = line
                    .map_err(|e| Failure::new(INVALID_ARGS, format!("cannot read stdin: {e}")))?;
                let body = serde_json::from_str::<Box<RawValue>>(&line)
                    .unwrap_or_else(|_| params::string(&line));
                send(&client, &args, &body, &mut acks).await?;
            }
        }
    }
    if args.ack {
        if g.json {
            println!(
                "{}",
                json!({ "events": acks.events, "delivered": acks.delivered, "dropped": acks.dropped })
            );
        } else {
            let events = if acks.events == 1 {
                String::new()
            } else {
                format!("{} events: ", acks.events)
            };
            println!(
                "{events}delivered to {} subscription(s), dropped by {}",
                acks.delivered, acks.dropped
            );
        }
    }
    Ok(OK)
}

async fn send(
    client: &Client,
    args: &PublishArgs,
    body: &RawValue,
    acks: &mut Acks,
) -> Result<(), Failure> {
    // Every event is acknowledged, so that one a topic's contract refuses ends the command with
    // exit 60 and the reason, instead of a warning; --ack only prints the counts.
    let delivery = client.publish_acked(&args.topic, body).await?;
    acks.delivered += delivery.delivered;
    acks.dropped += delivery.dropped;
    acks.events += 1;
    Ok(())
}

/// The lines of stdin, read on their own thread so the client's socket task keeps running.
fn stdin_lines() -> mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel(256);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let line = line.map(|l| l.strip_suffix('\r').map(str::to_owned).unwrap_or(l));
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}
