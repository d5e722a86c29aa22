//! `plexus echo`: serves an object that answers every method with its params unchanged,
//! optionally under a contract read from a file.

use clap::Args;
use plexus_client::{CallContext, Error, Object};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::bus::{Global, ReconnectArgs};
use crate::exit::{Failure, INVALID_ARGS};

/// `plexus echo [--name NAME] [--schema FILE]`.
#[derive(Args, Debug)]
pub struct EchoArgs {
    /// The name to serve.
    #[arg(long, default_value = "echo")]
    name: String,
    /// Join the name's queue group instead of owning it alone.
    #[arg(long)]
    shared: bool,
    /// Serve under the contract in FILE: `{"methods": {"m": {"params": {...}, "result":
    /// {...}}}, "topics": {"t": {"payload": {...}}}}` (JSON Schema 2020-12); the broker then
    /// checks every call's params and every answer against it.
    #[arg(long, value_name = "FILE")]
    schema: Option<std::path::PathBuf>,
    #[command(flatten)]
    reconnect: ReconnectArgs,
}

/// Answers with the params as they came, declaring its contract if it has one.
struct Echo {
    contract: Option<Value>,
}

impl Object for Echo {
    fn description(&self) -> Option<Value> {
        self.contract.clone()
    }

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
    let contract = match &args.schema {
        Some(path) => Some(read_contract(path)?),
        None => None,
    };
    let (client, watch) = g.connect_long("echo", &args.reconnect).await?;
    let echo = Echo { contract };
    if args.shared {
        client.serve_shared(&args.name, echo).await?;
    } else {
        client.serve(&args.name, echo).await?;
    }
    crate::serve_cmd::serve_until_stopped(&client, watch, &args.name, &g).await
}

/// Reads a contract file: a JSON object (the broker checks the schemas in it).
fn read_contract(path: &std::path::Path) -> Result<Value, Failure> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::new(INVALID_ARGS, format!("cannot read {shown}: {e}")))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(contract @ Value::Object(_)) => Ok(contract),
        Ok(_) => Err(Failure::new(
            INVALID_ARGS,
            format!(
                "{shown} must hold a JSON object like {{\"methods\": {{\"m\": {{\"params\": {{...}}}}}}}}"
            ),
        )),
        Err(e) => Err(Failure::new(
            INVALID_ARGS,
            format!("{shown} is not JSON: {e}"),
        )),
    }
}
