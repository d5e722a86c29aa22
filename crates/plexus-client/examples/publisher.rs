//! Publishes one temperature reading on `sensor.temperature` (as ipc-broker's publisher example does).
//!
//! Run: `cargo run -p plexus-bus-client --example publisher` (bus from `PLEXUS_BUS`).

use plexus_client::{Client, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let client = Client::builder().name("publisher").connect().await?;
    let delivery = client.publish_acked("sensor.temperature", "25.6°C").await?;
    println!("published to {} subscriber(s)", delivery.delivered);
    Ok(())
}
