//! `plexus echo`: serves an object that answers every method with its params unchanged.

use clap::Args;
use serde_json::Value;

use crate::bus::BusArgs;
use crate::exit::{Failure, OK};

/// `plexus echo [--name NAME]`.
#[derive(Args, Debug)]
pub struct EchoArgs {
    /// The name to serve.
    #[arg(long, default_value = "echo")]
    name: String,
    /// Join the name's queue group instead of owning it alone.
    #[arg(long)]
    shared: bool,
    #[command(flatten)]
    bus: BusArgs,
}

/// Runs `plexus echo` until interrupted.
pub async fn echo(args: EchoArgs) -> Result<u8, Failure> {
    let client = args.bus.connect().await?;
    let handler = |_method: String, params: Value, _ctx| async move { Ok(params) };
    if args.shared {
        client
            .serve_shared(&args.name, plexus_client::FnObject(handler))
            .await?;
    } else {
        client.serve_fn(&args.name, handler).await?;
    }
    println!("serving {} on {}", args.name, client.address());
    crate::bus::stop_signal().await;
    Ok(OK)
}
