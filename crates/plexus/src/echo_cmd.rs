//! `plexus echo`: serves an object that answers every method with its params unchanged.

use clap::Args;
use plexus_client::{CallContext, Error, Object};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::bus::{Global, ReconnectArgs};
use crate::exit::Failure;

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
    reconnect: ReconnectArgs,
}

/// Answers with the params as they came.
struct Echo;

impl Object for Echo {
    async fn call(
        &self,
        _method: &str,
        params: &RawValue,
        _ctx: &CallContext,
    ) -> Result<Value, Error> {
        Ok(serde_json::from_str(params.get())?)
    }
}

/// Runs `plexus echo` until interrupted.
pub async fn echo(args: EchoArgs, g: Global) -> Result<u8, Failure> {
    let (client, watch) = g.connect_long("echo", &args.reconnect).await?;
    if args.shared {
        client.serve_shared(&args.name, Echo).await?;
    } else {
        client.serve(&args.name, Echo).await?;
    }
    crate::serve_cmd::serve_until_stopped(&client, watch, &args.name, &g).await
}
