//! `plexus`: the broker daemon and the tools to use a bus from the shell.

mod bench;
mod bridge_cmd;
mod bridge_ipcprims_cmd;
mod broker_cmd;
mod bus;
mod call_cmd;
// Contracts.
mod call_check;
mod complete_cmd;
// Contracts.
mod contract_view;
mod doctor_cmd;
// Access control.
mod doctor_access;
mod echo_cmd;
mod exit;
mod listen_cmd;
mod monitor_cmd;
mod names_cmd;
mod output;
mod params;
mod publish_cmd;
mod serve_cmd;
mod status_cmd;
mod watch;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::bus::Global;

/// plexus: a message bus for processes — calls, events and names over a Unix socket or TCP.
#[derive(Parser)]
#[command(version, about, long_about = None, after_help = exit::TABLE)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker daemon.
    Broker(Box<broker_cmd::BrokerArgs>),
    /// Make a server of another protocol a bus object:
    /// `bridge procbridge --name NAME --connect HOST:PORT|unix:PATH`,
    /// `bridge ipcprims --name NAME --connect SOCKET`.
    Bridge(bridge_cmd::BridgeArgs),
    /// Call a method and print its result as JSON: `call OBJECT METHOD [PARAMS]` or
    /// `call OBJECT.METHOD [PARAMS]`.
    Call(call_cmd::CallArgs),
    /// Publish an event on TOPIC (or one per line of stdin).
    Publish(publish_cmd::PublishArgs),
    /// Print events matching PATTERNs as they come.
    Listen(listen_cmd::ListenArgs),
    /// List the names on the bus with their owners (or --subscriptions: every subscription).
    List(names_cmd::ListArgs),
    /// Show the methods an object declared: name, signature, description, and their schemas
    /// (--markdown: reference docs).
    Introspect(names_cmd::IntrospectArgs),
    /// Print every call, answer, error and event the broker routes, with timing.
    Monitor(monitor_cmd::MonitorArgs),
    /// Wait until every NAME is registered (exit 0), or time out (exit 124).
    Wait(names_cmd::WaitArgs),
    /// Measure round trips to the broker.
    Ping(status_cmd::PingArgs),
    /// Print the broker's counters.
    Stats(status_cmd::StatsArgs),
    /// Measure latency, throughput, fan-out, payloads and memory against the socket floors:
    /// `bench [SCENARIO...] [--json] [--duration D] [--pin]`, `bench --list`.
    Bench(bench::BenchArgs),
    /// Serve an object that answers every method with its params.
    Echo(echo_cmd::EchoArgs),
    /// Serve NAME by running a command per call: params on its stdin, its stdout the result.
    Serve(serve_cmd::ServeArgs),
    /// Check the socket, its permissions and the broker, and say what to fix.
    Doctor(doctor_cmd::DoctorArgs),
    /// Print the version.
    Version(doctor_cmd::VersionArgs),
    /// Print what plexus sees of its environment.
    Envinfo,
    /// Print shell completions, which also complete the names on the bus (see the README).
    Completions {
        /// bash, zsh or fish (elvish and powershell without names).
        shell: clap_complete::Shell,
    },
    /// What the completion scripts call: candidates for the last of WORDS.
    #[command(name = "__complete", hide = true)]
    Complete(complete_cmd::CompleteArgs),
    /// The processes `plexus bench` starts: echo worker, subscriber, floor echo and relay.
    #[command(name = "__bench-helper", hide = true)]
    BenchHelper(bench::helper::HelperArgs),
}

/// Logs go to stderr, never stdout. By default the broker says what it listens on and warns;
/// connections show from -vv. Client commands print only warnings, and none of the client's
/// connection events, which long-running commands tell the user of themselves.
fn init_logging(verbose: u8, broker: bool) {
    let default = match (verbose, broker) {
        (0, true) => {
            "warn,plexus_broker::listener=info,plexus_broker::accept=info,plexus_broker::connection::stop=info"
        }
        (0, false) => "warn,plexus_client::event_loop=off,plexus_client::session=off",
        (1, true) => "info,plexus_broker::connection=warn,plexus_broker::connection::stop=info",
        (1, false) => "info",
        (2, _) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(filter);
    tracing_subscriber::registry()
        .with(fmt)
        .with(watch::layer())
        .init();
}

/// Runs a client subcommand on a single-threaded runtime.
fn run_client<F>(json_errors: bool, fut: F) -> ExitCode
where
    F: std::future::Future<Output = Result<u8, exit::Failure>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("plexus: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    match runtime.block_on(fut) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            failure.report(json_errors);
            ExitCode::from(failure.code)
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::INVALID_ARGS
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(cli.verbose, matches!(cli.command, Command::Broker(_)));
    let g = cli.global;
    let json = g.json;
    match cli.command {
        Command::Broker(args) => broker_cmd::run(*args),
        Command::Bridge(args) => run_client(json, bridge_cmd::bridge(args, g)),
        Command::Call(args) => run_client(json, call_cmd::call(args, g)),
        Command::Publish(args) => run_client(json, publish_cmd::publish(args, g)),
        Command::Listen(args) => run_client(json, listen_cmd::listen(args, g)),
        Command::List(args) => run_client(json, names_cmd::list(args, g)),
        Command::Introspect(args) => run_client(json, names_cmd::introspect(args, g)),
        Command::Monitor(args) => run_client(json, monitor_cmd::monitor(args, g)),
        Command::Wait(args) => run_client(json, names_cmd::wait(args, g)),
        Command::Ping(args) => run_client(json, status_cmd::ping(args, g)),
        Command::Stats(args) => run_client(json, status_cmd::stats(args, g)),
        Command::Bench(args) => run_client(json, bench::bench(args, g)),
        Command::BenchHelper(args) => run_client(json, bench::helper::run(args, g)),
        Command::Echo(args) => run_client(json, echo_cmd::echo(args, g)),
        Command::Serve(args) => run_client(json, serve_cmd::serve(args, g)),
        Command::Doctor(args) => run_client(json, doctor_cmd::doctor(args, g)),
        Command::Version(args) => ExitCode::from(doctor_cmd::version(&args, json)),
        Command::Envinfo => ExitCode::from(doctor_cmd::envinfo(json)),
        Command::Completions { shell } => {
            complete_cmd::script(shell, &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Complete(args) => run_client(false, complete_cmd::complete(args, g)),
    }
}

/// The command line's definition, for completions.
pub fn cli_command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
