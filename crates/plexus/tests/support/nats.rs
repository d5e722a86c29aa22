//! Real `nats-server` processes for the cluster tests: one server, or several clustered over
//! loopback routes, with JetStream storing in a temporary directory; each can be killed and
//! started again on the same ports and store. Every process is killed when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::WAIT;
use super::process::kill_and_reap;

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
