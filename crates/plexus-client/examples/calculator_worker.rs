//! Serves the object `math` with `add` and `mul` on `{"a":..,"b":..}` (as ipc-broker's calculator worker does).
//!
//! Run: `cargo run -p plexus-bus-client --example calculator_worker` (bus from `PLEXUS_BUS`).

use plexus_client::{CallContext, Client, Error, Object, parse_params};
use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};

#[derive(Deserialize)]
struct Args {
    a: i64,
    b: i64,
}

struct Calculator;

impl Object for Calculator {
    async fn call(
        &self,
        method: &str,
        params: &RawValue,
        _ctx: &CallContext,
    ) -> Result<Value, Error> {
        let Args { a, b } = parse_params(params)?;
        match method {
            "add" => Ok(json!({ "sum": a + b })),
            "mul" => Ok(json!({ "product": a * b })),
            other => Err(Error::no_such_method(other)),
        }
    }

    fn methods(&self) -> Vec<String> {
        vec!["add".into(), "mul".into()]
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let client = Client::builder()
        .name("calculator_worker")
        .connect()
        .await?;
    client.serve("math", Calculator).await?;
    println!("serving math on {}", client.address());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
