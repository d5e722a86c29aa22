//! Publishes one temperature reading on `sensor.temperature` (seed ipc-broker's publisher).
//!
//! Run: `cargo run -p plexus-client --example publisher` (bus from `PLEXUS_BUS`).

use plexus_client::{Client, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let client = Client::builder().name("publisher").connect().await?;
    let delivery = client.publish_acked("sensor.temperature", "25.6°C").await?;
    println!("published to {} subscriber(s)", delivery.delivered);
    Ok(())
}
