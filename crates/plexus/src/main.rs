//! `plexus`: the broker daemon and the tools to use a bus from the shell.

mod broker_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// plexus: a message bus for processes — calls, events and names over a Unix socket or TCP.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker daemon.
    Broker(broker_cmd::BrokerArgs),
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn,plexus_broker=info",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match cli.command {
        Command::Broker(args) => broker_cmd::run(args),
    }
}
