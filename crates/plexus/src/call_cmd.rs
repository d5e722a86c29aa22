//! `plexus call` and `plexus publish`: send params given on the command line.

use std::time::Duration;

use clap::Args;
use serde_json::Value;

use crate::bus::{BusArgs, parse_duration};
use crate::exit::{Failure, OK};
use crate::params;

/// `plexus call OBJECT METHOD [ARGS...]`.
#[derive(Args, Debug)]
pub struct CallArgs {
    /// The object to call.
    object: String,
    /// The method.
    method: String,
    /// Params: one JSON value, key=value pairs (key:=json for raw JSON), or a signature
    /// like `{ii} a 10 b 32`.
    #[arg(allow_negative_numbers = true)]
    args: Vec<String>,
    /// How long to wait for the answer (5s, 250ms, or seconds).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print compact JSON on one line.
    #[arg(long)]
    raw: bool,
    /// Report errors as JSON on stderr.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bus: BusArgs,
}

impl CallArgs {
    /// Whether errors go out as JSON.
    pub fn json(&self) -> bool {
        self.json
    }
}

/// Prints `value` pretty, or compact with `raw`.
pub fn print_json(value: &Value, raw: bool) {
    let text = if raw {
        value.to_string()
    } else {
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    };
    println!("{text}");
}

/// Runs `plexus call`.
pub async fn call(args: CallArgs) -> Result<u8, Failure> {
    let params = params::parse(&args.args)?;
    let client = args.bus.connect().await?;
    let body = match &params {
        Some(v) => serde_json::to_vec(v).map_err(plexus_client::Error::from)?,
        None => Vec::new(),
    };
    let result = client
        .call_raw(&args.object, &args.method, &body, args.timeout)
        .await?;
    let value: Value = if result.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&result).map_err(plexus_client::Error::from)?
    };
    print_json(&value, args.raw);
    Ok(OK)
}

/// `plexus publish TOPIC [ARGS...]`.
#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The topic (dot-separated, no wildcards).
    topic: String,
    /// The event body, in the same forms as `plexus call`'s params.
    #[arg(allow_negative_numbers = true)]
    args: Vec<String>,
    /// Print how many subscribers got it.
    #[arg(long)]
    ack: bool,
    /// Report errors as JSON on stderr.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bus: BusArgs,
}

impl PublishArgs {
    /// Whether errors go out as JSON.
    pub fn json(&self) -> bool {
        self.json
    }
}

/// Runs `plexus publish`.
pub async fn publish(args: PublishArgs) -> Result<u8, Failure> {
    let body = params::parse(&args.args)?.unwrap_or(Value::Null);
    let client = args.bus.connect().await?;
    if args.ack {
        let delivery = client.publish_acked(&args.topic, &body).await?;
        println!(
            "delivered to {} subscription(s), dropped by {}",
            delivery.delivered, delivery.dropped
        );
    } else {
        client.publish(&args.topic, &body).await?;
    }
    Ok(OK)
}
