//! A broker running inside the test process on a temporary Unix socket and TCP port 0, which a
//! test can stop and start again on the same socket.

use std::net::SocketAddr;
use std::path::PathBuf;

use plexus_broker::{Broker, Config};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::WAIT;
use crate::raw_client::RawClient;

/// A broker running inside the test process.
pub struct TestBroker {
    /// Its Unix socket.
    pub path: PathBuf,
    /// Its first TCP address (on 127.0.0.1, with the port the system chose).
    pub tcp: SocketAddr,
    /// Every bound TCP address: `tcp` first, then any the config added (ipc-broker's).
    pub tcp_addrs: Vec<SocketAddr>,
    /// Where it serves the dashboard, the API and metrics, when the config asked for them.
    pub http: Option<SocketAddr>,
    /// The ipc-server listener's address, when the config asked for one.
    pub ipc_server: Option<SocketAddr>,
    running: Running,
    config: Config,
    dir: tempfile::TempDir,
}

/// A stopped [`TestBroker`]: its directory (and so its socket path) is kept for a restart.
pub struct StoppedBroker {
    config: Config,
    dir: tempfile::TempDir,
}

/// The broker's task, told to stop when dropped.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestBroker {
    /// A broker with the default config.
    pub async fn start() -> TestBroker {
        Self::with_config(Config::default()).await
    }

    /// A broker with `config`, whose socket and TCP addresses are replaced by a temporary socket
    /// and 127.0.0.1 port 0.
    pub async fn with_config(config: Config) -> TestBroker {
        Self::start_in(tempfile::tempdir().expect("tempdir"), config).await
    }

    async fn start_in(dir: tempfile::TempDir, mut config: Config) -> TestBroker {
        let path = dir.path().join("bus.sock");
        config.socket = Some(path.clone());
        config.tcp = vec!["127.0.0.1:0".parse().expect("addr")];
        let broker = Broker::bind(config.clone()).await.expect("bind");
        let tcp_addrs = broker.tcp_addrs();
        let tcp = tcp_addrs[0];
        let http = broker.http_addr();
        let ipc_server = broker.ipc_server_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            broker
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("broker run");
        });
        TestBroker {
            path,
            tcp,
            tcp_addrs,
            http,
            ipc_server,
            running: Running {
                stop: Some(stop),
                task: Some(task),
            },
            config,
            dir,
        }
    }

    /// The bus address of its Unix socket, `unix:PATH`, as clients and `PLEXUS_BUS` take it.
    pub fn addr(&self) -> String {
        format!("unix:{}", self.path.display())
    }

    /// A raw-frame client on the Unix socket that said `hello` as `name`.
    pub async fn raw_client(&self, name: &str) -> RawClient<UnixStream> {
        RawClient::hello(
            UnixStream::connect(&self.path).await.expect("connect"),
            name,
        )
        .await
    }

    /// A raw-frame client over TCP that said `hello` as `name`.
    pub async fn raw_tcp_client(&self, name: &str) -> RawClient<TcpStream> {
        RawClient::hello(
            TcpStream::connect(self.tcp).await.expect("connect tcp"),
            name,
        )
        .await
    }

    /// Stops the broker and waits until it has finished; the result can restart it.
    pub async fn stop(self) -> StoppedBroker {
        self.running.stop().await;
        StoppedBroker {
            config: self.config,
            dir: self.dir,
        }
    }
}

impl StoppedBroker {
    /// The socket path it listened on and listens on again after [`StoppedBroker::restart`].
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("bus.sock")
    }

    /// Starts the broker again on the same socket path, with the same config.
    pub async fn restart(self) -> TestBroker {
        TestBroker::start_in(self.dir, self.config).await
    }
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("broker stops in time")
                .expect("broker task");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
