//! The plexus broker: a message bus daemon that routes calls between processes and fans out
//! events to subscribers.
//!
//! [`Broker::bind`] opens the sockets; [`Broker::run`] serves until the shutdown future resolves.
//! `docs/architecture.md` describes the tasks and who owns which state.

mod accept;
// Cluster.
mod cluster;
mod config;
mod conn_id;
mod connection;
// Contracts.
mod contracts;
mod error;
mod listener;
// Counted always, read only by the HTTP listener.
#[cfg(feature = "http")]
mod http;
#[cfg_attr(not(feature = "http"), allow(dead_code))]
mod observe;
mod outbox;
mod peer;
mod pending;
// Access control.
mod policy;
mod queue_groups;
mod quotas;
mod registry;
mod router;
mod shutdown;
mod stats;
mod subscriptions;
mod timer;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tracing::{info, warn};

use accept::Acceptor;
// Cluster.
pub use cluster::ClusterConfig;
pub use config::{Config, IPC_BROKER_PORT, IPC_BROKER_SOCKET, IPC_SERVER_ADDR, SlowConsumer};
// Contracts.
pub use contracts::{LocalFailure, check_params_locally, referenced_contract_names};
pub use error::BrokerError;
use listener::SocketDir;
pub use listener::default_path;
// Access control.
pub use policy::token::TokenCheck;
pub use policy::{Accounts, Policy};
pub use quotas::Quotas;
use router::Router;
use shutdown::Shutdown;

// Performance: the micro-benchmarks' way in.
/// Building blocks of the broker exposed for the micro-benchmarks in `benches/` (the
/// subscription trie and a connection's outbox). Not a stable API: the broker is used through
/// [`Broker`] and [`run`].
pub mod internals {
    pub use crate::outbox::{Full, Outbox, OutboxReceiver, held, outbox};
    pub use crate::subscriptions::{SubKey, Subscriptions};
}

/// A broker whose sockets are bound, ready to run.
pub struct Broker {
    router: Arc<Router>,
    unix: Option<UnixSocket>,
    /// ipc-broker's socket path, when asked for.
    ipc_unix: Option<UnixSocket>,
    tcp: Vec<TcpListener>,
    /// Dashboard: the HTTP listener.
    http: Option<TcpListener>,
    /// ipc-server's TCP address, when asked for.
    ipc_server: Option<TcpListener>,
}

/// The Unix listener and whether the broker made its file (and so removes it at shutdown).
struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
    owned: bool,
}

impl Broker {
    /// Checks the config ([`Config::validate`]), then binds the Unix socket (unless
    /// `config.no_unix`), the TCP addresses, and ipc-broker's socket and TCP address and
    /// ipc-server's TCP address when the config asks for them.
    pub async fn bind(config: Config) -> Result<Broker, BrokerError> {
        Self::bind_with(config, None).await
    }

    /// Like [`Broker::bind`], but serves `activated` (a listening socket passed by systemd) instead
    /// of creating the Unix socket; its file is left in place at shutdown.
    pub async fn bind_with(
        config: Config,
        activated: Option<std::os::unix::net::UnixListener>,
    ) -> Result<Broker, BrokerError> {
        config.validate().map_err(BrokerError::InvalidConfig)?;
        let unix = match activated {
            Some(std_listener) => Some(listener::adopt_unix(std_listener)?),
            None if config.no_unix => None,
            None => {
                let (path, kind) = match &config.socket {
                    Some(path) => (path.clone(), SocketDir::Given),
                    None => (default_path(), SocketDir::Default),
                };
                let listener = listener::bind_unix(&path, kind)?;
                // Access control.
                listener::share(&path, config.socket_mode, config.socket_group)?;
                Some(UnixSocket {
                    listener,
                    path,
                    owned: true,
                })
            }
        };
        let ipc_unix = match &config.ipc_broker_socket {
            Some(path) => Some(UnixSocket {
                listener: listener::bind_unix(path, SocketDir::Given)?,
                path: path.clone(),
                owned: true,
            }),
            None => None,
        };
        let mut tcp = Vec::new();
        for addr in config.tcp.iter().chain(&config.ipc_broker_tcp) {
            tcp.push(bind_tcp(*addr).await?);
        }
        let ipc_server = match config.ipc_server_compat {
            Some(addr) => Some(bind_tcp(addr).await?),
            None => None,
        };
        let http = match config.http {
            Some(_) if !cfg!(feature = "http") => return Err(BrokerError::NoHttp),
            Some(addr) => Some(bind_tcp(addr).await?),
            None => None,
        };
        // Contracts.
        let pinned = match &config.contracts_dir {
            Some(dir) => {
                contracts::load_pinned(dir, config.max_description_bytes, config.max_contract_depth)
                    .map_err(BrokerError::InvalidConfig)?
            }
            None => Vec::new(),
        };
        let router = Router::new(config);
        router.pin_contracts(pinned);
        Ok(Broker {
            router: Arc::new(router),
            unix,
            ipc_unix,
            tcp,
            http,
            ipc_server,
        })
    }

    /// The Unix socket path, if listening on one.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix.as_ref().map(|u| u.path.as_path())
    }

    /// The ipc-broker socket path, if listening on one.
    pub fn ipc_broker_path(&self) -> Option<&Path> {
        self.ipc_unix.as_ref().map(|u| u.path.as_path())
    }

    /// The address ipc-server programs connect to, if listening for them.
    pub fn ipc_server_addr(&self) -> Option<SocketAddr> {
        self.ipc_server.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The address the dashboard, the monitoring API and `/metrics` are served on.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound TCP addresses (with real ports when port 0 was asked).
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves until `signal` resolves, then stops accepting, answers pending calls with
    /// `shutting_down`, flushes what is queued, closes connections and removes the socket.
    pub async fn run(self, signal: impl Future<Output = ()>) -> Result<(), BrokerError> {
        let shutdown = Shutdown::default();
        let router = self.router;
        // Cluster: the link joins the router before the first connection is accepted, so that
        // every name registered is claimed cluster-wide.
        if let Some(cluster) = router.config().cluster.clone() {
            shutdown.spawn(cluster::run(router.clone(), cluster, shutdown.clone()));
        }
        let acceptor = Acceptor::new(router.clone(), shutdown.clone());
        let mut socket_paths = Vec::new();
        for unix in self.unix.into_iter().chain(self.ipc_unix) {
            info!(path = %unix.path.display(), "listening on Unix socket");
            shutdown.spawn(acceptor.clone().run(unix.listener));
            if unix.owned {
                socket_paths.push(unix.path);
            }
        }
        #[cfg(feature = "http")]
        if let Some(l) = self.http {
            shutdown.spawn(http::serve(l, router.clone(), shutdown.clone()));
        }
        for l in self.tcp {
            if let Ok(addr) = l.local_addr() {
                info!(%addr, "listening on TCP");
            }
            shutdown.spawn(acceptor.clone().run(l));
        }
        if let Some(l) = self.ipc_server {
            if let Ok(addr) = l.local_addr() {
                info!(%addr, "listening on TCP for ipc-server programs");
            }
            let ipc_server = acceptor
                .clone()
                .speaking(plexus_proto::dialect::Dialect::IpcServer);
            shutdown.spawn(ipc_server.run(l));
        }
        shutdown.spawn(timer::run(router.clone(), shutdown.clone()));
        signal.await;
        info!("shutting down");
        router.begin_shutdown();
        shutdown.begin();
        let grace = router.config().shutdown_grace;
        if tokio::time::timeout(grace * 2, shutdown.finished())
            .await
            .is_err()
        {
            warn!("some connections did not close within the grace period");
        }
        for path in socket_paths {
            let _ = std::fs::remove_file(&path);
        }
        info!("stopped");
        Ok(())
    }
}

async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, BrokerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| BrokerError::io(format!("cannot listen on {addr}"), e))
}

/// Binds and runs a broker until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), BrokerError> {
    Broker::bind(config).await?.run(shutdown).await
}
