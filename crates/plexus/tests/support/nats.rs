//! Real `nats-server` processes for the cluster tests: one server, or several clustered over
//! loopback routes, with JetStream storing in a temporary directory; each can be killed and
//! started again on the same ports and store. Every process is killed when dropped. Also: one
//! server configured for TLS or authentication, the certificates and NATS credentials it needs,
//! and the `plexus broker` flags that join a cluster.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::WAIT;
use super::process::{BrokerProc, kill_and_reap};

/// A free loopback TCP port (free when asked; nothing else on this machine races for it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One `nats-server` of a [`Nats`] system.
struct Server {
    args: Vec<String>,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

/// `nats-server` processes on loopback ports, clustered when there are several.
pub struct Nats {
    servers: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl Nats {
    /// Starts `n` servers with JetStream; with more than one, they form a cluster over routes
    /// (three are needed for JetStream to keep a quorum when one is down). Fails the test when
    /// `nats-server` is not installed.
    pub fn start(n: usize) -> Nats {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, route)| format!("nats://127.0.0.1:{route}"))
            .collect();
        let servers = ports
            .iter()
            .enumerate()
            .map(|(i, (port, route))| {
                let store = dir.path().join(format!("js{i}"));
                let mut args = vec![
                    "-a".to_owned(),
                    "127.0.0.1".to_owned(),
                    "-p".to_owned(),
                    port.to_string(),
                    "-n".to_owned(),
                    format!("s{i}"),
                    "-js".to_owned(),
                    "-sd".to_owned(),
                    store.display().to_string(),
                ];
                if n > 1 {
                    args.extend([
                        "--cluster_name".to_owned(),
                        "plexus-test".to_owned(),
                        "--cluster".to_owned(),
                        format!("nats://127.0.0.1:{route}"),
                        "--routes".to_owned(),
                        routes.join(","),
                    ]);
                }
                Server {
                    args,
                    port: *port,
                    child: None,
                    log: dir.path().join(format!("nats-{i}.log")),
                }
            })
            .collect();
        let mut nats = Nats { servers, _dir: dir };
        for i in 0..n {
            nats.start_server(i);
        }
        for i in 0..n {
            nats.wait_listening(i);
        }
        nats
    }

    /// One server with JetStream and `conf` (`nats-server` configuration text: `tls { ... }`,
    /// `authorization { ... }`, `operator: ...`) in its configuration file: for the TLS and
    /// authentication tests.
    pub fn start_configured(conf: &str) -> Nats {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let file = dir.path().join("nats.conf");
        std::fs::write(&file, conf).expect("write nats.conf");
        let args = vec![
            "-c".to_owned(),
            file.display().to_string(),
            "-a".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port.to_string(),
            "-js".to_owned(),
            "-sd".to_owned(),
            dir.path().join("js").display().to_string(),
        ];
        let server = Server {
            args,
            port,
            child: None,
            log: dir.path().join("nats-0.log"),
        };
        let mut nats = Nats {
            servers: vec![server],
            _dir: dir,
        };
        nats.start_server(0);
        nats.wait_listening(0);
        nats
    }

    /// What server `i` logged.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.servers[i].log).unwrap_or_default()
    }

    /// The client URL of server `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.servers[i].port)
    }

    fn start_server(&mut self, i: usize) {
        let server = &mut self.servers[i];
        let log = std::fs::File::create(&server.log).expect("nats log file");
        let child = Command::new("nats-server")
            .args(&server.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run nats-server ({e}); the cluster tests need it: apt-get install nats-server"
                )
            });
        server.child = Some(child);
    }

    fn wait_listening(&self, i: usize) {
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", self.servers[i].port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server {i} did not listen in time; its log:\n{}",
                std::fs::read_to_string(&self.servers[i].log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills server `i` (SIGKILL, as a crash).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            kill_and_reap(&mut child);
        }
    }

    /// Starts server `i` again on the same ports and store, and waits until it listens.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.start_server(i);
        self.wait_listening(i);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}

/// `plexus broker` flags joining cluster `test` through `url` as `node`, with a 3 s lease.
pub fn cluster_args(url: &str, node: &str, replicas: usize) -> Vec<String> {
    [
        "--cluster",
        url,
        "--cluster-name",
        "test",
        "--cluster-node",
        node,
        "--cluster-kv-replicas",
        &replicas.to_string(),
        "--cluster-lease-ms",
        "3000",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A certificate authority and the certificates it signed, made with the `openssl` command.
pub struct Certs {
    /// The CA's certificate (PEM).
    pub ca: PathBuf,
    /// The server's certificate, for `127.0.0.1`, and its key.
    pub server: (PathBuf, PathBuf),
    /// A client certificate and its key.
    pub client: (PathBuf, PathBuf),
}

/// Runs `openssl` with `args` in `dir`; fails the test, with its output, if it fails (or is
/// missing: `.ci/run` installs it).
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}); apt-get install openssl"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    /// A new CA in `dir`, a server certificate for IP 127.0.0.1 and a client certificate, all
    /// P-256 and valid for two days.
    pub fn make(dir: &Path) -> Certs {
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(key);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=plexus-test-ca",
        ]);
        openssl(dir, &ca);
        for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            let ext = format!(
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n"
            );
            std::fs::write(dir.join(format!("{name}.ext")), ext).expect("write ext");
            let (k, csr, pem, ext) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            let mut req = vec!["req"];
            req.extend(key);
            req.extend(["-keyout", &k, "-out", &csr, "-subj", "/CN=127.0.0.1"]);
            openssl(dir, &req);
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                ],
            );
        }
        let path = |f: &str| dir.join(f);
        Certs {
            ca: path("ca.pem"),
            server: (path("server.pem"), path("server.key")),
            client: (path("client.pem"), path("client.key")),
        }
    }
}

/// NATS decentralized authentication made in the test: an operator, accounts it signed (each
/// with or without JetStream) and a user of each, as JWTs signed with their nkeys, with the
/// `nats-server` configuration that trusts the operator and preloads the accounts.
pub struct Decentralized {
    dir: PathBuf,
    operator: nkeys::KeyPair,
    accounts: Vec<(String, String)>,
    /// The system account's public key (JetStream needs one).
    system: String,
}

/// base64url without padding, as JWTs use.
fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A NATS JWT: `claims` about `subject` (a public nkey) named `name`, signed by `issuer`.
fn nats_jwt(name: &str, subject: &str, issuer: &nkeys::KeyPair, nats: serde_json::Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({
        "jti": format!("PLEXUSTEST{}{now}", name.to_uppercase()),
        "iat": now,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let signed = format!(
        "{}.{}",
        b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#),
        b64(claims.to_string().as_bytes())
    );
    let signature = issuer.sign(signed.as_bytes()).expect("sign a JWT");
    format!("{signed}.{}", b64(&signature))
}

impl Decentralized {
    /// A new operator; its files go in `dir`.
    pub fn new(dir: &Path) -> Decentralized {
        let mut auth = Decentralized {
            dir: dir.to_owned(),
            operator: nkeys::KeyPair::new_operator(),
            accounts: Vec::new(),
            system: String::new(),
        };
        auth.account("SYS", false);
        auth.system = auth.accounts[0].0.clone();
        auth
    }

    /// A new account, with JetStream or without, and a user of it: the path of the user's
    /// `.creds` file.
    pub fn account(&mut self, name: &str, jetstream: bool) -> PathBuf {
        let account = nkeys::KeyPair::new_account();
        let storage = if jetstream { -1 } else { 0 };
        let limits = serde_json::json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
            "mem_storage": storage, "disk_storage": storage, "streams": storage, "consumer": storage,
        });
        let account_jwt = nats_jwt(
            name,
            &account.public_key(),
            &self.operator,
            serde_json::json!({
                "limits": limits,
                "default_permissions": { "pub": {}, "sub": {} },
                "type": "account",
                "version": 2,
            }),
        );
        self.accounts.push((account.public_key(), account_jwt));
        let user = nkeys::KeyPair::new_user();
        let user_jwt = nats_jwt(
            &format!("{name}-user"),
            &user.public_key(),
            &account,
            serde_json::json!({
                "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                "type": "user", "version": 2,
            }),
        );
        let seed = user.seed().expect("the user's seed");
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        );
        let path = self.dir.join(format!("{name}.creds"));
        std::fs::write(&path, creds).expect("write the creds file");
        path
    }

    /// The `nats-server` configuration: trust the operator, know the accounts.
    pub fn server_conf(&self) -> String {
        let operator_jwt = nats_jwt(
            "plexus-test-operator",
            &self.operator.public_key(),
            &self.operator,
            serde_json::json!({ "type": "operator", "version": 2 }),
        );
        let path = self.dir.join("operator.jwt");
        std::fs::write(&path, operator_jwt).expect("write the operator JWT");
        let preload: Vec<String> = self
            .accounts
            .iter()
            .map(|(key, jwt)| format!("  {key}: \"{jwt}\""))
            .collect();
        format!(
            "operator: \"{}\"\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n{}\n}}\n",
            path.display(),
            self.system,
            preload.join("\n")
        )
    }
}

/// How long a broker may take to join NATS and open the name store (a JetStream cluster may
/// take a while to elect its leaders).
pub const READY: Duration = Duration::from_secs(60);

/// A broker joining cluster `test` through `url` as `node`, with `config` (TOML, read at start)
/// and more `args`.
pub fn cluster_broker(url: &str, node: &str, config: &str, args: &[&str]) -> BrokerProc {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("broker.toml");
    std::fs::write(&file, config).expect("write the broker's config");
    let mut all = cluster_args(url, node, 1);
    all.extend(["--config".to_owned(), file.display().to_string()]);
    all.extend(args.iter().map(|a| (*a).to_owned()));
    BrokerProc::start(&all.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A client of `addr` named `name`, with a 20 s call timeout.
pub async fn bus_client(addr: &str, name: &str) -> plexus_client::Client {
    plexus_client::Client::builder()
        .address(addr)
        .name(name)
        .call_timeout(Duration::from_secs(20))
        .connect()
        .await
        .expect("connect")
}

/// A broker's `plexus.stats`.
pub async fn stats(client: &plexus_client::Client) -> serde_json::Value {
    client
        .call("plexus", "stats", &serde_json::Value::Null)
        .await
        .expect("plexus.stats")
}

/// Waits until the `cluster` part of the broker's `plexus.stats` satisfies `ready` (within
/// [`READY`]), and returns it.
pub async fn await_cluster(
    broker: &BrokerProc,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let c = bus_client(&broker.addr(), "ready").await;
    let deadline = Instant::now() + READY;
    loop {
        let s = stats(&c).await["cluster"].clone();
        if ready(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the broker's cluster state never came: {s}\n{}",
            broker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the broker is connected to NATS and its name store is open.
pub async fn await_joined(broker: &BrokerProc) {
    await_cluster(broker, |s| {
        s["nats"] == "connected" && s["name_store"] == "ready"
    })
    .await;
}
