//! `plexus`: the broker daemon and the tools to use a bus from the shell.

mod bench_cmd;
mod bridge_cmd;
mod bridge_ipcprims_cmd;
mod broker_cmd;
mod bus;
mod call_cmd;
mod doctor_cmd;
mod echo_cmd;
mod exit;
mod listen_cmd;
mod monitor_cmd;
mod names_cmd;
mod params;
mod status_cmd;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// plexus: a message bus for processes — calls, events and names over a Unix socket or TCP.
#[derive(Parser)]
#[command(version, about, long_about = None, after_help = exit::TABLE)]
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
    /// Make a server of another protocol a bus object:
    /// `bridge procbridge --name NAME --connect HOST:PORT|unix:PATH`,
    /// `bridge ipcprims --name NAME --connect SOCKET`.
    Bridge(bridge_cmd::BridgeArgs),
    /// Call OBJECT.METHOD and print the result as JSON.
    Call(call_cmd::CallArgs),
    /// Publish an event on TOPIC.
    Publish(call_cmd::PublishArgs),
    /// Print events matching PATTERNs as they come.
    Listen(listen_cmd::ListenArgs),
    /// List the names on the bus with their owners.
    List(names_cmd::ListArgs),
    /// Show the methods an object declared.
    Introspect(names_cmd::IntrospectArgs),
    /// Print every call, answer, error and event the broker routes, with timing.
    Monitor(monitor_cmd::MonitorArgs),
    /// Wait until every NAME is registered (exit 0), or time out (exit 124).
    Wait(names_cmd::WaitArgs),
    /// Measure round trips to the broker.
    Ping(status_cmd::PingArgs),
    /// Print the broker's counters.
    Stats(status_cmd::StatsArgs),
    /// Measure call latency and throughput and publish throughput against the socket floor.
    Bench(bench_cmd::BenchArgs),
    /// Serve an object that answers every method with its params.
    Echo(echo_cmd::EchoArgs),
    /// Check the socket, its permissions and the broker, and say what to fix.
    Doctor(doctor_cmd::DoctorArgs),
    /// Print the version.
    Version(doctor_cmd::VersionArgs),
    /// Print what plexus sees of its environment.
    Envinfo,
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
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
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
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
    init_logging(cli.verbose);
    match cli.command {
        Command::Broker(args) => broker_cmd::run(args),
        Command::Bridge(args) => run_client(false, bridge_cmd::bridge(args)),
        Command::Call(args) => run_client(args.json(), call_cmd::call(args)),
        Command::Publish(args) => run_client(args.json(), call_cmd::publish(args)),
        Command::Listen(args) => run_client(args.json(), listen_cmd::listen(args)),
        Command::List(args) => run_client(args.json(), names_cmd::list(args)),
        Command::Introspect(args) => run_client(args.json(), names_cmd::introspect(args)),
        Command::Monitor(args) => run_client(args.json(), monitor_cmd::monitor(args)),
        Command::Wait(args) => run_client(false, names_cmd::wait(args)),
        Command::Ping(args) => run_client(false, status_cmd::ping(args)),
        Command::Stats(args) => run_client(false, status_cmd::stats(args)),
        Command::Bench(args) => run_client(false, bench_cmd::bench(args)),
        Command::Echo(args) => run_client(false, echo_cmd::echo(args)),
        Command::Doctor(args) => run_client(false, doctor_cmd::doctor(args)),
        Command::Version(args) => ExitCode::from(doctor_cmd::version(&args)),
        Command::Envinfo => ExitCode::from(doctor_cmd::envinfo()),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "plexus", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}
