//! Broker settings and their defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use plexus_proto::DEFAULT_MAX_FRAME;

use crate::policy::Policy;
use crate::policy::admit::{Listeners, check_listeners};
use crate::policy::token::TokenCheck;
// Cluster.
use crate::cluster::ClusterConfig;

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
    /// Bytes a connection's outbox may hold before calls to it fail and events to it drop (or,
    /// with [`SlowConsumer::Disconnect`], it is disconnected). At least `max_frame`, so that an
    /// empty outbox always takes the largest frame.
    pub outbox_limit: usize,
    /// Timeout of a call that names none.
    pub default_call_timeout: Duration,
    /// Requests (calls and `plexus.wait_for` waits) one connection may have waiting for answers
    /// at once.
    pub max_pending_per_connection: usize,
    /// Connections open at once, over every listener; past it, a new connection is told
    /// `overloaded` and closed.
    pub max_connections: usize,
    /// How long a new connection has to send its `hello` (a dialect connection: its first
    /// complete message).
    pub handshake_timeout: Duration,
    /// How long shutdown waits for outboxes to drain.
    pub shutdown_grace: Duration,
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
    // Router limits.
    /// Longest timeout a call or a `plexus.wait_for` may have; longer ones are cut to it. At least
    /// `default_call_timeout`.
    pub max_call_timeout: Duration,
    /// Requests (calls and waits) waiting for answers at once over all connections.
    pub max_pending: usize,
    /// Names one `plexus.wait_for` may wait for.
    pub max_wait_names: usize,
    /// Names one connection may hold (exclusively or as a queue group member).
    pub max_names_per_connection: usize,
    /// Names registered at once over all connections.
    pub max_names: usize,
    /// Subscriptions one connection may hold.
    pub max_subscriptions_per_connection: usize,
    /// Subscriptions held at once over all connections.
    pub max_subscriptions: usize,
    /// Largest description (the JSON payload of a `register`) kept for `plexus.introspect`.
    pub max_description_bytes: usize,
    /// What happens to a subscriber whose outbox has no room for an event.
    pub slow_consumer: SlowConsumer,
    // Publish stall.
    /// Longest a publisher's connection is not read from, once per read, while its events hold
    /// a subscriber's outbox past half its `outbox_limit` (a subscriber that wrote nothing in
    /// that time stalls nobody again until it reads). Zero: publishers are never stalled, and
    /// events past the limit are dropped (`slow_consumer`) at once.
    pub publish_stall: Duration,
    // Access control.
    /// Who may do what; `None`: every peer that can open a socket may do everything (the Unix
    /// socket's 0600 mode keeps other users out).
    pub policy: Option<Arc<Policy>>,
    /// The token TCP peers present in `hello`; with one, TCP peers without it are refused
    /// (unless the policy has rules for anonymous peers).
    pub token: Option<TokenCheck>,
    /// Lets a native TCP listener bind beyond loopback; needs `token`.
    pub allow_remote: bool,
    /// The Unix socket's mode; anything but 0600 needs a policy.
    pub socket_mode: u32,
    /// The group the Unix socket is given (with a mode like 0660); needs a policy.
    pub socket_group: Option<u32>,
    // Dashboard.
    /// Serve the dashboard, the JSON monitoring API, the live feed and Prometheus `/metrics` over
    /// HTTP on this address (`docs/monitoring.md`). Beyond loopback only with `allow_remote` and
    /// `token`, and then every request must present the token.
    pub http: Option<SocketAddr>,
    // Contracts.
    /// A directory of pinned contracts, one `NAME.json` per object name: a worker registering a
    /// pinned name with a different contract is refused. Each file is at most
    /// `max_description_bytes`.
    pub contracts_dir: Option<PathBuf>,
    /// Whether workers' results are checked against their contracts (params and event payloads
    /// always are).
    pub check_results: bool,
    /// Deepest nesting (objects and arrays) of a contract's JSON.
    pub max_contract_depth: usize,
    // Cluster.
    /// Join a cluster of brokers through NATS (`--cluster`); `None`: this broker stands alone.
    pub cluster: Option<ClusterConfig>,
}

/// What the broker does with a subscriber whose outbox has no room for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumer {
    /// The event is dropped and counted; the next event delivered on that subscription carries
    /// the number dropped.
    #[default]
    Drop,
    /// The subscriber is sent an `overloaded` error (id 0) naming the limit and disconnected, like
    /// a NATS slow consumer.
    Disconnect,
}

impl SlowConsumer {
    /// The name in config files and `plexus.stats`.
    pub fn name(self) -> &'static str {
        match self {
            SlowConsumer::Drop => "drop",
            SlowConsumer::Disconnect => "disconnect",
        }
    }
}

impl std::str::FromStr for SlowConsumer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop" => Ok(SlowConsumer::Drop),
            "disconnect" => Ok(SlowConsumer::Disconnect),
            other => Err(format!(
                "slow_consumer is \"drop\" or \"disconnect\", not {other:?}"
            )),
        }
    }
}

// Publish stall.
/// The default [`Config::publish_stall`].
pub const DEFAULT_PUBLISH_STALL: Duration = Duration::from_millis(20);
/// The longest [`Config::publish_stall`] accepted.
pub const MAX_PUBLISH_STALL: Duration = Duration::from_secs(60);

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
            outbox_limit: 2 * DEFAULT_MAX_FRAME as usize,
            default_call_timeout: Duration::from_secs(30),
            max_pending_per_connection: 65_536,
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            ipc_broker_socket: None,
            ipc_broker_tcp: None,
            // Connection limits.
            partial_frame_timeout: Duration::from_secs(30),
            // ipc-server and ipcprims.
            ipc_server_compat: None,
            // Router limits.
            max_call_timeout: Duration::from_secs(3600),
            max_pending: 1_000_000,
            max_wait_names: 64,
            max_names_per_connection: 1_000,
            max_names: 100_000,
            max_subscriptions_per_connection: 10_000,
            max_subscriptions: 1_000_000,
            max_description_bytes: 64 * 1024,
            slow_consumer: SlowConsumer::Drop,
            // Publish stall.
            publish_stall: DEFAULT_PUBLISH_STALL,
            // Access control.
            policy: None,
            token: None,
            allow_remote: false,
            socket_mode: 0o600,
            socket_group: None,
            // Dashboard.
            http: None,
            // Contracts.
            contracts_dir: None,
            check_results: true,
            max_contract_depth: 32,
            // Cluster.
            cluster: None,
        }
    }
}

impl Config {
    /// Checks that the settings make sense together; the error names the settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.outbox_limit < self.max_frame as usize {
            return Err(format!(
                "outbox_limit {} is below max_frame {}: a frame the broker accepts could never be queued to a peer; raise outbox_limit to at least max_frame",
                self.outbox_limit, self.max_frame
            ));
        }
        // Publish stall.
        if self.publish_stall > MAX_PUBLISH_STALL {
            return Err(format!(
                "publish_stall {} ms is more than {} ms: a publisher not read from that long looks hung to its program; use a few milliseconds, or 0 to never stall publishers",
                self.publish_stall.as_millis(),
                MAX_PUBLISH_STALL.as_millis()
            ));
        }
        // Router limits.
        if self.max_call_timeout.as_millis() > u128::from(u32::MAX) {
            return Err(format!(
                "max_call_timeout {} ms is more than a call frame can carry ({} ms)",
                self.max_call_timeout.as_millis(),
                u32::MAX
            ));
        }
        if self.max_call_timeout < self.default_call_timeout {
            return Err(format!(
                "max_call_timeout {} ms is below the default call timeout {} ms",
                self.max_call_timeout.as_millis(),
                self.default_call_timeout.as_millis()
            ));
        }
        // Access control.
        if self.socket_mode & !0o777 != 0 || self.socket_mode & 0o600 != 0o600 {
            return Err(format!(
                "socket_mode {:04o} is not a permission mode the broker's own user can use; use 0600, 0660 or 0666",
                self.socket_mode
            ));
        }
        let dialect_tcp: Vec<SocketAddr> = self
            .ipc_broker_tcp
            .iter()
            .chain(&self.ipc_server_compat)
            .copied()
            .collect();
        let listeners = Listeners {
            native_tcp: &self.tcp,
            dialect_tcp: &dialect_tcp,
            allow_remote: self.allow_remote,
            token: self.token.is_some(),
            shared_socket: self.socket_mode != 0o600 || self.socket_group.is_some(),
        };
        check_listeners(listeners, self.policy.as_deref())?;
        // Dashboard.
        if let Some(addr) = self.http
            && !addr.ip().is_loopback()
            && !(self.allow_remote && self.token.is_some())
        {
            return Err(format!(
                "http address {addr} is not a loopback address: the dashboard and its API show every connection, name and call to whoever reaches it; pass --allow-remote (allow_remote = true) together with --token-file, so that viewers must present the token, or serve it on 127.0.0.1"
            ));
        }
        // Cluster.
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
        }
        Ok(())
    }
}
