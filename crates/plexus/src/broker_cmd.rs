//! `plexus broker`: builds the broker's config from flags and runs it until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use plexus_broker::{Broker, Config};
use tokio::signal::unix::{SignalKind, signal};

/// Flags of `plexus broker`.
#[derive(Args)]
pub struct BrokerArgs {
    /// Unix socket path [default: $XDG_RUNTIME_DIR/plexus/bus.sock, else /tmp/plexus-$UID/bus.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Also listen on TCP (repeatable), e.g. 127.0.0.1:5123.
    #[arg(long, value_name = "ADDR")]
    tcp: Vec<SocketAddr>,
    /// Listen on TCP only, no Unix socket.
    #[arg(long, requires = "tcp")]
    no_unix: bool,
    /// Largest frame accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = plexus_proto::DEFAULT_MAX_FRAME)]
    max_frame: u32,
    /// Bytes a connection's outbox may hold before calls to it fail and its events drop.
    #[arg(long, value_name = "BYTES", default_value_t = 8 * 1024 * 1024)]
    outbox_limit: usize,
    /// Timeout of calls that name none, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    call_timeout_ms: u64,
    /// Worker threads; 1 runs everything on one thread, which is fastest on small machines.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
}

impl BrokerArgs {
    fn config(&self) -> Config {
        Config {
            socket: self.socket.clone(),
            no_unix: self.no_unix,
            tcp: self.tcp.clone(),
            max_frame: self.max_frame,
            outbox_limit: self.outbox_limit,
            default_call_timeout: Duration::from_millis(self.call_timeout_ms),
            ..Config::default()
        }
    }
}

/// Runs the broker; exit status 0 after a clean shutdown, 3 when it cannot listen.
pub fn run(args: BrokerArgs) -> ExitCode {
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("plexus broker: cannot start the async runtime: {e}");
            return ExitCode::from(125);
        }
    };
    runtime.block_on(async {
        let broker = match Broker::bind(args.config()).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("plexus broker: {e}");
                return ExitCode::from(3);
            }
        };
        if let Some(path) = broker.unix_path() {
            eprintln!("plexus broker listening on unix:{}", path.display());
        }
        for addr in broker.tcp_addrs() {
            eprintln!("plexus broker listening on tcp://{addr}");
        }
        match broker.run(stop_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("plexus broker: {e}");
                ExitCode::from(125)
            }
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
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
