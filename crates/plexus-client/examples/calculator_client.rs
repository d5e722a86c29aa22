//! Calls `math.add` with `{"a":10,"b":32}` and prints the result (as ipc-broker's calculator client does).
//!
//! Run: `cargo run -p plexus-bus-client --example calculator_client` (bus from `PLEXUS_BUS`).

use plexus_client::{Client, Error};
use serde::Serialize;
use serde_json::Value;

#[derive(Serialize)]
struct Params {
    a: i64,
    b: i64,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let client = Client::builder()
        .name("calculator_client")
        .connect()
        .await?;
    let response: Value = client.call("math", "add", &Params { a: 10, b: 32 }).await?;
    println!("{response}");
    Ok(())
}
