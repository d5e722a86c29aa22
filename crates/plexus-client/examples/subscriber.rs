//! Prints every event under `sensor.` until interrupted (as ipc-broker's subscriber example does).
//!
//! Run: `cargo run -p plexus-bus-client --example subscriber` (bus from `PLEXUS_BUS`).

use plexus_client::{Client, Error};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let client = Client::builder().name("subscriber").connect().await?;
    let mut events = client.subscribe("sensor.>").await?;
    println!("listening on sensor.>");
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(event) => println!("{} {}", event.topic, event.json::<Value>()?),
                None => return Ok(()),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
