//! A real broker running in the test's process on a temporary socket, that can be stopped and
//! started again on the same path.

use std::path::PathBuf;
use std::time::Duration;

use plexus_broker::{Broker, Config};
use plexus_client::Client;
use tokio::sync::oneshot;

/// How long a test waits for anything before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A broker on `dir/bus.sock`.
pub struct TestBroker {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestBroker {
    /// Starts a broker with `config` on the socket in `dir`.
    pub async fn start(dir: &tempfile::TempDir, config: Config) -> TestBroker {
        Self::start_at(dir.path().join("bus.sock"), config).await
    }

    /// Starts a broker with `config` on the socket at `path`.
    pub async fn start_at(path: PathBuf, config: Config) -> TestBroker {
        let config = Config {
            socket: Some(path),
            ..config
        };
        let broker = Broker::bind(config).await.expect("bind");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            broker
                .run(async { drop(stopped.await) })
                .await
                .expect("run");
        });
        TestBroker {
            stop: Some(stop),
            task,
        }
    }

    /// Stops the broker and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("stops")
            .expect("task");
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The bus address of the socket in `dir`.
pub fn addr(dir: &tempfile::TempDir) -> String {
    format!("unix:{}", dir.path().join("bus.sock").display())
}

/// A client of the broker in `dir` with default options.
pub async fn client(dir: &tempfile::TempDir) -> Client {
    Client::connect_to(&addr(dir)).await.expect("connect")
}
