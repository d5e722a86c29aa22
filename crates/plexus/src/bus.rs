//! Options shared by every client subcommand: the bus address, timeouts, connecting.

use std::time::Duration;

use clap::Args;
use plexus_client::Client;

use crate::exit::Failure;

/// Where the bus is.
#[derive(Args, Debug, Clone)]
pub struct BusArgs {
    /// Bus address: unix:/path, tcp://host:port, or a path [default: $PLEXUS_BUS, else the default socket].
    #[arg(long, value_name = "ADDR")]
    pub bus: Option<String>,
}

impl BusArgs {
    /// Connects (no reconnect: a command-line tool should fail, not wait).
    pub async fn connect(&self) -> Result<Client, Failure> {
        let mut builder = Client::builder().name("plexus-cli").reconnect(false);
        if let Some(addr) = &self.bus {
            builder = builder.address(addr.clone());
        }
        Ok(builder.connect().await?)
    }
}

/// Parses `5s`, `250ms`, `1m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Ok(Duration::from_secs_f64(secs));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like 5s, 250ms or 2.5: {e}"))
}

/// Resolves on SIGINT or SIGTERM (never, if the handlers cannot be installed).
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

/// The current time as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
