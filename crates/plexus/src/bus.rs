//! Options every client command shares (the bus address, JSON output, reconnecting) and
//! connecting.

use std::time::Duration;

use clap::Args;
use plexus_client::{Client, ClientBuilder};

use crate::exit::{Failure, INVALID_ARGS};
use crate::watch::Watch;

/// Global options: where the bus is and how to print.
#[derive(Args, Debug, Clone, Default)]
pub struct Global {
    /// Bus address: unix:/path, tcp://host:port, or a socket path [default: $PLEXUS_BUS, else
    /// the default socket, which `plexus doctor` shows].
    #[arg(long, value_name = "ADDR", global = true)]
    pub bus: Option<String>,
    /// Print output as JSON, one value per line, and errors as JSON on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// Access control: a file holding the token a broker on TCP asks for (its --token-file)
    /// [default: $PLEXUS_TOKEN].
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<std::path::PathBuf>,
}

/// `--no-reconnect`, for the commands that run until stopped.
#[derive(Args, Debug, Clone, Default)]
pub struct ReconnectArgs {
    /// Exit (status 3) when the broker goes away, instead of reconnecting with backoff and
    /// registering and subscribing again.
    #[arg(long)]
    pub no_reconnect: bool,
}

impl Global {
    /// A builder for `plexus COMMAND`'s client, shown as `plexus-COMMAND` in `plexus list`.
    fn builder(&self, command: &str) -> Result<ClientBuilder, Failure> {
        let mut builder = Client::builder().name(format!("plexus-{command}"));
        if let Some(addr) = &self.bus {
            builder = builder.address(addr.clone());
        }
        if let Some(path) = &self.token_file {
            let token = std::fs::read(path).map_err(|e| {
                Failure::new(
                    INVALID_ARGS,
                    format!("cannot read token file {}: {e}", path.display()),
                )
            })?;
            builder = builder.token(token.trim_ascii());
        }
        Ok(builder)
    }

    /// Connects a command that ends by itself: when the broker goes away, what is open fails
    /// rather than waits.
    pub async fn connect(&self, command: &str) -> Result<Client, Failure> {
        Ok(self.builder(command)?.reconnect(false).connect().await?)
    }

    /// Connects a command that runs until stopped. Unless `--no-reconnect`, the client
    /// reconnects after a broker restart and registers and subscribes again; the [`Watch`] tells
    /// the user and says when the command must end.
    pub async fn connect_long(
        &self,
        command: &str,
        reconnect: &ReconnectArgs,
    ) -> Result<(Client, Watch), Failure> {
        let client = self
            .builder(command)?
            .reconnect(!reconnect.no_reconnect)
            .connect()
            .await?;
        let watch = Watch::new(&client, !reconnect.no_reconnect, self.json);
        Ok((client, watch))
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
