//! Broker settings and their defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use plexus_proto::DEFAULT_MAX_FRAME;

/// Everything the broker can be told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Unix socket to listen on; `None` for the default path.
    pub socket: Option<PathBuf>,
    /// Do not listen on a Unix socket at all (TCP only).
    pub no_unix: bool,
    /// TCP addresses to listen on (none by default).
    pub tcp: Vec<SocketAddr>,
    /// Largest frame accepted, header included.
    pub max_frame: u32,
    /// Bytes a connection's outbox may hold before calls to it fail and events to it drop.
    pub outbox_limit: usize,
    /// Timeout of a call that names none.
    pub default_call_timeout: Duration,
    /// Calls one connection may have waiting for answers at once.
    pub max_pending_per_connection: usize,
    /// Connections open at once, over every listener; past it, a new connection is told
    /// `overloaded` and closed.
    pub max_connections: usize,
    /// How long a new connection has to send its `hello` (a dialect connection: its first
    /// complete message).
    pub handshake_timeout: Duration,
    /// How long shutdown waits for outboxes to drain.
    pub shutdown_grace: Duration,
    /// Serve Prometheus metrics on this address (`GET /metrics`).
    pub metrics: Option<SocketAddr>,
    /// Also listen on this Unix socket, where programs built on the `ipc-broker` crate connect
    /// (it is [`IPC_BROKER_SOCKET`] for them). Every socket speaks every dialect; this one only
    /// adds the path.
    pub ipc_broker_socket: Option<PathBuf>,
    /// Also listen on this TCP address for `ipc-broker` programs (they use TCP when
    /// `BROKER_ADDR` is set; its own broker uses port [`IPC_BROKER_PORT`]).
    pub ipc_broker_tcp: Option<SocketAddr>,
    // Connection limits.
    /// How long a frame (or dialect message) that has begun to arrive may take to complete;
    /// past it the connection is closed with `bad_frame`. Idle connections are never timed out.
    pub partial_frame_timeout: Duration,
    // ipc-server and ipcprims.
    /// Also listen on this TCP address for ipc-server programs (they connect to
    /// [`IPC_SERVER_ADDR`] unless `ENV_SERVER_ADDRESS` says otherwise). Every connection on it
    /// speaks ipc-server: its bare JSON objects cannot be told from NDJSON by their first bytes.
    pub ipc_server_compat: Option<SocketAddr>,
}

/// The socket path the `ipc-broker` crate's clients and workers connect to.
pub const IPC_BROKER_SOCKET: &str = "/tmp/ipc_broker.sock";
/// The TCP port of the `ipc-broker` crate's own broker.
pub const IPC_BROKER_PORT: u16 = 5123;
/// The address ipc-server's programs connect to by default.
pub const IPC_SERVER_ADDR: &str = plexus_proto::dialect::ipc_server::DEFAULT_ADDR;

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: None,
            no_unix: false,
            tcp: Vec::new(),
            max_frame: DEFAULT_MAX_FRAME,
            outbox_limit: 8 * 1024 * 1024,
            default_call_timeout: Duration::from_secs(30),
            max_pending_per_connection: 65_536,
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            metrics: None,
            ipc_broker_socket: None,
            ipc_broker_tcp: None,
            // Connection limits.
            partial_frame_timeout: Duration::from_secs(30),
            // ipc-server and ipcprims.
            ipc_server_compat: None,
        }
    }
}
