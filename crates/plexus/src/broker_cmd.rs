//! `plexus broker`: builds the broker's config from a TOML file and flags (flags win), takes a
//! socket passed by systemd if there is one, and runs until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use std::sync::Arc;

use plexus_broker::{Accounts, Broker, ClusterConfig, Config, Policy, TokenCheck};
use serde::Deserialize;

use crate::bus::stop_signal;
use crate::exit;

/// Flags of `plexus broker`. Each has a key of the same name (with `_`) in the config file.
#[derive(Args, Debug, Default)]
pub struct BrokerArgs {
    /// TOML file with any of the keys below (socket, tcp, no_unix, max_frame, outbox_limit,
    /// max_connections, call_timeout_ms, threads, http (or metrics), ipc_broker_compat, ipc_broker_tcp,
    /// handshake_timeout_ms, partial_frame_timeout_ms, ipc_server_compat), and the router limits
    /// (max_pending_per_connection, max_pending, max_call_timeout_ms, max_wait_names,
    /// max_names_per_connection, max_names, max_subscriptions_per_connection, max_subscriptions,
    /// max_description_bytes, slow_consumer = "drop" or "disconnect", publish_stall_ms), access control
    /// (policy, token_file, allow_remote, socket_mode = "0660", socket_group), contracts
    /// (contracts_dir, check_results = true or false, max_contract_depth), and the cluster
    /// keys (cluster = ["nats://..."], cluster_name, cluster_node, cluster_credentials,
    /// cluster_token, cluster_tls_ca, cluster_tls_cert, cluster_tls_key, cluster_tls_required,
    /// cluster_lease_ms, cluster_kv_replicas, cluster_export_names, cluster_export_topics,
    /// cluster_import_topics); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Unix socket path [default: $XDG_RUNTIME_DIR/plexus/bus.sock, else /tmp/plexus-$UID/bus.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Also listen on TCP (repeatable), e.g. 127.0.0.1:5123.
    #[arg(long, value_name = "ADDR")]
    tcp: Vec<SocketAddr>,
    /// Listen on TCP only, no Unix socket.
    #[arg(long)]
    no_unix: bool,
    /// Largest frame accepted, in bytes [default: 16842752, a 16 MiB payload and its header].
    #[arg(long, value_name = "BYTES")]
    max_frame: Option<u32>,
    /// Bytes a connection's outbox may hold before calls to it fail and its events drop; at
    /// least max_frame [default: 33685504].
    #[arg(long, value_name = "BYTES")]
    outbox_limit: Option<usize>,
    // Publish stall.
    /// Longest a publisher is not read from, once per read, while its events hold a
    /// subscriber's outbox past half of outbox_limit; a subscriber that reads nothing meanwhile
    /// stalls nobody again until it reads; 0 never stalls (events past the limit drop at once)
    /// [default: 20].
    #[arg(long, value_name = "MS")]
    publish_stall_ms: Option<u64>,
    /// Connections open at once; past it, new ones are told `overloaded` and closed
    /// [default: 4096].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Timeout of calls that name none, in milliseconds [default: 30000].
    #[arg(long, value_name = "MS")]
    call_timeout_ms: Option<u64>,
    /// Runtime threads; 1 runs everything on one thread, fastest on small machines [default: 1].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Also listen on the socket of the `ipc-broker` crate, so programs built on its IPCClient and
    /// WorkerBuilder connect unchanged [PATH default: /tmp/ipc_broker.sock].
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = plexus_broker::IPC_BROKER_SOCKET)]
    ipc_broker_compat: Option<PathBuf>,
    /// Also listen on TCP for `ipc-broker` programs (which use TCP when BROKER_ADDR is set)
    /// [ADDR default: 127.0.0.1:5123].
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:5123")]
    ipc_broker_tcp: Option<SocketAddr>,
    // Connection limits.
    /// How long a new connection has to send its hello (a dialect connection: its first complete
    /// message), in milliseconds [default: 10000].
    #[arg(long, value_name = "MS")]
    handshake_timeout_ms: Option<u64>,
    /// How long a frame or dialect message that has begun to arrive may take to complete, in
    /// milliseconds; idle connections are never timed out [default: 30000].
    #[arg(long, value_name = "MS")]
    partial_frame_timeout_ms: Option<u64>,
    // ipc-server and ipcprims.
    /// Also listen on TCP for `ipc-server` programs; every connection there speaks ipc-server
    /// [ADDR default: 127.0.0.1:1986, where they connect unless ENV_SERVER_ADDRESS is set].
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = plexus_broker::IPC_SERVER_ADDR)]
    ipc_server_compat: Option<SocketAddr>,
    // Access control.
    /// Who may own, join, call, publish, subscribe, watch the monitor feed and see `list`
    /// details, and per-user quotas (TOML; docs/security.md). Without one, any peer that can
    /// open a socket may do everything.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// A file (mode 0600) holding the token TCP peers must present (PLEXUS_TOKEN or --token-file
    /// on the client); TCP peers without it are refused unless the policy grants anonymous
    /// peers rights.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Let --tcp listen beyond loopback; needs --token-file.
    #[arg(long)]
    allow_remote: bool,
    /// Mode of the Unix socket, in octal [default: 0600]; 0660 or 0666 needs --policy.
    #[arg(long, value_name = "MODE")]
    socket_mode: Option<String>,
    /// Group (name or gid) given the Unix socket, with --socket-mode 0660; needs --policy.
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    // Dashboard.
    /// Serve the dashboard at http://ADDR/, the JSON monitoring API at /api/*, and Prometheus
    /// text at /metrics; loopback addresses only (`--metrics` is the same flag)
    /// [ADDR default: 127.0.0.1:7777].
    #[cfg(feature = "http")]
    #[arg(long, visible_alias = "metrics", value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:7777")]
    http: Option<SocketAddr>,
    // Contracts.
    /// Pinned contracts: a directory with one NAME.json per object name; a worker registering
    /// NAME with a different contract is refused.
    #[arg(long, value_name = "DIR")]
    contracts_dir: Option<PathBuf>,
    /// Do not check workers' results against their contracts (params and event payloads still
    /// are).
    #[arg(long)]
    no_check_results: bool,
    // Cluster.
    /// Join a cluster of brokers through these NATS servers (comma-separated URLs, e.g.
    /// nats://10.0.0.5:4222,nats://10.0.0.6:4222); see docs/scaling.md.
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    cluster: Vec<String>,
    /// The cluster's name, part of every NATS subject it uses [default: plexus].
    #[arg(long, value_name = "NAME")]
    cluster_name: Option<String>,
    /// This broker's name in the cluster, unique in it [default: the host name].
    #[arg(long, value_name = "NAME")]
    cluster_node: Option<String>,
    /// How long this broker's names outlive it in the cluster when it stops renewing them, in
    /// milliseconds [default: 15000].
    #[arg(long, value_name = "MS")]
    cluster_lease_ms: Option<u64>,
    /// Copies of the cluster's name store (JetStream replicas) when this broker creates it
    /// [default: 1].
    #[arg(long, value_name = "N")]
    cluster_kv_replicas: Option<usize>,
}

/// The config file: every key optional, unknown keys refused.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    socket: Option<PathBuf>,
    tcp: Option<Vec<SocketAddr>>,
    no_unix: Option<bool>,
    max_frame: Option<u32>,
    outbox_limit: Option<usize>,
    max_connections: Option<usize>,
    call_timeout_ms: Option<u64>,
    threads: Option<usize>,
    // Dashboard.
    #[serde(alias = "metrics")]
    http: Option<SocketAddr>,
    ipc_broker_compat: Option<PathBuf>,
    ipc_broker_tcp: Option<SocketAddr>,
    // Connection limits.
    handshake_timeout_ms: Option<u64>,
    partial_frame_timeout_ms: Option<u64>,
    // ipc-server and ipcprims.
    ipc_server_compat: Option<SocketAddr>,
    // Router limits.
    max_pending_per_connection: Option<usize>,
    max_pending: Option<usize>,
    max_call_timeout_ms: Option<u64>,
    max_wait_names: Option<usize>,
    max_names_per_connection: Option<usize>,
    max_names: Option<usize>,
    max_subscriptions_per_connection: Option<usize>,
    max_subscriptions: Option<usize>,
    max_description_bytes: Option<usize>,
    slow_consumer: Option<String>,
    // Publish stall.
    publish_stall_ms: Option<u64>,
    // Access control.
    policy: Option<PathBuf>,
    token_file: Option<PathBuf>,
    allow_remote: Option<bool>,
    socket_mode: Option<String>,
    socket_group: Option<String>,
    // Contracts.
    contracts_dir: Option<PathBuf>,
    check_results: Option<bool>,
    max_contract_depth: Option<usize>,
    // Cluster.
    cluster: Option<Vec<String>>,
    cluster_name: Option<String>,
    cluster_node: Option<String>,
    cluster_credentials: Option<PathBuf>,
    cluster_token: Option<String>,
    cluster_tls_ca: Option<PathBuf>,
    cluster_tls_cert: Option<PathBuf>,
    cluster_tls_key: Option<PathBuf>,
    cluster_tls_required: Option<bool>,
    cluster_lease_ms: Option<u64>,
    cluster_kv_replicas: Option<usize>,
    cluster_export_names: Option<Vec<String>>,
    cluster_export_topics: Option<Vec<String>>,
    cluster_import_topics: Option<Vec<String>>,
}

/// Reads and checks a config file; the error names the file, the line and the key.
fn read_config(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
}

impl BrokerArgs {
    /// The broker config and thread count: flags, else the file, else defaults.
    fn resolve(&self) -> Result<(Config, usize), String> {
        let file = match &self.config {
            Some(path) => read_config(path)?,
            None => FileConfig::default(),
        };
        let defaults = Config::default();
        // Cluster.
        let cluster = self.cluster_config(&file);
        // Dashboard.
        #[cfg(feature = "http")]
        let http = self.http.or(file.http);
        #[cfg(not(feature = "http"))]
        let http = file.http;
        let config = Config {
            socket: self.socket.clone().or(file.socket),
            no_unix: self.no_unix || file.no_unix.unwrap_or(false),
            tcp: if self.tcp.is_empty() {
                file.tcp.unwrap_or_default()
            } else {
                self.tcp.clone()
            },
            max_frame: self
                .max_frame
                .or(file.max_frame)
                .unwrap_or(defaults.max_frame),
            outbox_limit: self
                .outbox_limit
                .or(file.outbox_limit)
                .unwrap_or(defaults.outbox_limit),
            max_connections: self
                .max_connections
                .or(file.max_connections)
                .unwrap_or(defaults.max_connections),
            default_call_timeout: self
                .call_timeout_ms
                .or(file.call_timeout_ms)
                .map_or(defaults.default_call_timeout, Duration::from_millis),
            ipc_broker_socket: self.ipc_broker_compat.clone().or(file.ipc_broker_compat),
            ipc_broker_tcp: self.ipc_broker_tcp.or(file.ipc_broker_tcp),
            // Connection limits.
            handshake_timeout: self
                .handshake_timeout_ms
                .or(file.handshake_timeout_ms)
                .map_or(defaults.handshake_timeout, Duration::from_millis),
            partial_frame_timeout: self
                .partial_frame_timeout_ms
                .or(file.partial_frame_timeout_ms)
                .map_or(defaults.partial_frame_timeout, Duration::from_millis),
            // ipc-server and ipcprims.
            ipc_server_compat: self.ipc_server_compat.or(file.ipc_server_compat),
            // Router limits.
            max_pending_per_connection: file
                .max_pending_per_connection
                .unwrap_or(defaults.max_pending_per_connection),
            max_pending: file.max_pending.unwrap_or(defaults.max_pending),
            max_call_timeout: file
                .max_call_timeout_ms
                .map_or(defaults.max_call_timeout, Duration::from_millis),
            max_wait_names: file.max_wait_names.unwrap_or(defaults.max_wait_names),
            max_names_per_connection: file
                .max_names_per_connection
                .unwrap_or(defaults.max_names_per_connection),
            max_names: file.max_names.unwrap_or(defaults.max_names),
            max_subscriptions_per_connection: file
                .max_subscriptions_per_connection
                .unwrap_or(defaults.max_subscriptions_per_connection),
            max_subscriptions: file.max_subscriptions.unwrap_or(defaults.max_subscriptions),
            max_description_bytes: file
                .max_description_bytes
                .unwrap_or(defaults.max_description_bytes),
            slow_consumer: match &file.slow_consumer {
                Some(policy) => policy.parse()?,
                None => defaults.slow_consumer,
            },
            // Publish stall.
            publish_stall: self
                .publish_stall_ms
                .or(file.publish_stall_ms)
                .map_or(defaults.publish_stall, Duration::from_millis),
            // Access control.
            policy: match self.policy.as_ref().or(file.policy.as_ref()) {
                Some(path) => Some(Arc::new(Policy::load(path, Accounts::system())?)),
                None => None,
            },
            token: match self.token_file.as_ref().or(file.token_file.as_ref()) {
                Some(path) => Some(TokenCheck::from_file(path)?),
                None => None,
            },
            allow_remote: self.allow_remote || file.allow_remote.unwrap_or(false),
            socket_mode: match self.socket_mode.as_ref().or(file.socket_mode.as_ref()) {
                Some(text) => parse_mode(text)?,
                None => defaults.socket_mode,
            },
            socket_group: match self.socket_group.as_ref().or(file.socket_group.as_ref()) {
                Some(text) => Some(parse_group(text)?),
                None => None,
            },
            // Dashboard.
            http,
            // Contracts.
            contracts_dir: self.contracts_dir.clone().or(file.contracts_dir),
            check_results: !self.no_check_results
                && file.check_results.unwrap_or(defaults.check_results),
            max_contract_depth: file
                .max_contract_depth
                .unwrap_or(defaults.max_contract_depth),
            // Cluster.
            cluster,
            ..defaults
        };
        if config.no_unix && config.tcp.is_empty() {
            return Err(
                "no_unix needs at least one tcp address, or the broker would listen nowhere".into(),
            );
        }
        if config.max_connections == 0 {
            return Err("max_connections 0 would refuse every connection; at least 1".into());
        }
        if config.max_frame < 1024 {
            return Err(format!(
                "max_frame {} is too small; at least 1024 bytes",
                config.max_frame
            ));
        }
        config.validate()?;
        Ok((config, self.threads.or(file.threads).unwrap_or(1).max(1)))
    }

    // Cluster.
    /// The cluster settings, when the flags or the file name NATS servers.
    fn cluster_config(&self, file: &FileConfig) -> Option<ClusterConfig> {
        let servers = if self.cluster.is_empty() {
            file.cluster.clone()?
        } else {
            self.cluster.clone()
        };
        let mut c = ClusterConfig::new(servers);
        if let Some(name) = self.cluster_name.clone().or(file.cluster_name.clone()) {
            c.name = name;
        }
        if let Some(node) = self.cluster_node.clone().or(file.cluster_node.clone()) {
            c.node = node;
        }
        if let Some(ms) = self.cluster_lease_ms.or(file.cluster_lease_ms) {
            c.lease = Duration::from_millis(ms);
        }
        if let Some(n) = self.cluster_kv_replicas.or(file.cluster_kv_replicas) {
            c.kv_replicas = n;
        }
        c.credentials = file.cluster_credentials.clone();
        c.token = file.cluster_token.clone();
        c.tls_ca = file.cluster_tls_ca.clone();
        c.tls_cert = file.cluster_tls_cert.clone();
        c.tls_key = file.cluster_tls_key.clone();
        c.tls_required = file.cluster_tls_required.unwrap_or(false);
        for (list, from) in [
            (&mut c.export_names, &file.cluster_export_names),
            (&mut c.export_topics, &file.cluster_export_topics),
            (&mut c.import_topics, &file.cluster_import_topics),
        ] {
            if let Some(from) = from {
                list.clone_from(from);
            }
        }
        Some(c)
    }
}

/// Access control: a socket mode in octal, `0660` or `660`.
fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .map_err(|_| format!("socket_mode {text:?} is not an octal mode like 0660"))
}

/// Access control: a group name or gid.
fn parse_group(text: &str) -> Result<u32, String> {
    text.parse()
        .ok()
        .or_else(|| Accounts::system().gid_of(text))
        .ok_or_else(|| format!("socket_group {text:?} is neither a gid nor a group in /etc/group"))
}

/// Runs the broker; exit status 0 after a clean shutdown, 64 for a bad config, 3 when it cannot
/// listen.
pub fn run(args: BrokerArgs) -> ExitCode {
    let (config, threads) = match args.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("plexus broker: {e}");
            return ExitCode::from(exit::INVALID_ARGS);
        }
    };
    // Read LISTEN_FDS before any other thread exists: the crate clears the variables.
    let activated = match listenfd::ListenFd::from_env().take_unix_listener(0) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "plexus broker: the socket passed by systemd (LISTEN_FDS) is not a Unix listener: {e}"
            );
            return ExitCode::from(exit::TRANSPORT);
        }
    };
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("plexus broker: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    runtime.block_on(async {
        let broker = match Broker::bind_with(config, activated).await {
            Ok(b) => b,
            Err(e @ plexus_broker::BrokerError::InvalidConfig(_)) => {
                eprintln!("plexus broker: {e}");
                return ExitCode::from(exit::INVALID_ARGS);
            }
            Err(e) => {
                eprintln!("plexus broker: {e}");
                return ExitCode::from(exit::TRANSPORT);
            }
        };
        if let Some(path) = broker.unix_path() {
            eprintln!("plexus broker listening on unix:{}", path.display());
        }
        if let Some(path) = broker.ipc_broker_path() {
            eprintln!(
                "plexus broker listening for ipc-broker programs on unix:{}",
                path.display()
            );
        }
        for addr in broker.tcp_addrs() {
            eprintln!("plexus broker listening on tcp://{addr}");
        }
        if let Some(addr) = broker.ipc_server_addr() {
            eprintln!("plexus broker listening for ipc-server programs on tcp://{addr}");
        }
        // Dashboard.
        if let Some(addr) = broker.http_addr() {
            eprintln!(
                "plexus broker serving the dashboard on http://{addr}/ (API /api/server, metrics /metrics)"
            );
        }
        let stop = async {
            stop_signal().await;
            eprintln!("plexus broker stopping");
        };
        match broker.run(stop).await {
            Ok(()) => {
                eprintln!("plexus broker stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("plexus broker: {e}");
                ExitCode::from(exit::INTERNAL)
            }
        }
    })
}
