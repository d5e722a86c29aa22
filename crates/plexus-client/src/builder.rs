//! Client options and connecting: the handshake, then the socket task.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use plexus_proto::BusAddr;
use tokio::sync::mpsc;

use crate::address::{broker_uid_from_env, default_bus};
use crate::client::Client;
use crate::connect;
use crate::event_loop::EventLoop;
use crate::publish_queue::{PUBLISH_QUEUE_BYTES, PublishQueue};
use crate::{Error, Options, Token};

/// Connecting: the ways to get a [`Client`].
impl Client {
    /// Connects to `PLEXUS_BUS`, else the default socket.
    pub async fn connect() -> Result<Client, Error> {
        ClientBuilder::default().connect().await
    }

    /// Connects to `unix:/path`, `tcp://host:port`, or a socket path.
    pub async fn connect_to(addr: &str) -> Result<Client, Error> {
        ClientBuilder::default().address(addr).connect().await
    }

    /// A builder for other options.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }
}

/// Builds a [`Client`] with non-default options.
#[derive(Debug, Clone, Default)]
pub struct ClientBuilder {
    addr: Option<String>,
    options: Options,
}

impl ClientBuilder {
    /// The bus address (`unix:/path`, `tcp://host:port`, or a path); default `PLEXUS_BUS` or
    /// the default socket.
    pub fn address(mut self, addr: impl Into<String>) -> Self {
        self.addr = Some(addr.into());
        self
    }

    /// The client name the broker shows in `plexus list`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.options.name = name.into();
        self
    }

    /// Reconnect (re-registering names and re-subscribing) when the broker goes away. On by
    /// default.
    pub fn reconnect(mut self, on: bool) -> Self {
        self.options.reconnect = on;
        self
    }

    /// Timeout of calls that do not set one (default 30 s).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.options.call_timeout = timeout;
        self
    }

    /// Incoming calls handled at once by this client's objects (default 1024).
    pub fn max_concurrent_calls(mut self, n: usize) -> Self {
        self.options.max_concurrent_calls = n;
        self
    }

    /// Events a subscription queues before it drops (and counts) more (default 65,536).
    pub fn subscription_capacity(mut self, n: usize) -> Self {
        self.options.subscription_capacity = n.max(1);
        self
    }

    /// Talk only to a broker running as user `uid` (checked on Unix sockets before anything is
    /// sent). Default: `PLEXUS_BROKER_UID` if set, else the client's own user or root.
    pub fn trust_broker_uid(mut self, uid: u32) -> Self {
        self.options.trust_broker_uid = Some(uid);
        self
    }

    /// The token to present to a broker on TCP (its `--token-file`); default `PLEXUS_TOKEN`.
    /// Never sent on a Unix socket, where the broker knows the client by its user.
    pub fn token(mut self, token: impl Into<Vec<u8>>) -> Self {
        self.options.token = Some(Token(token.into()));
        self
    }

    /// Connects and completes the handshake.
    pub async fn connect(mut self) -> Result<Client, Error> {
        let addr = match &self.addr {
            Some(text) => BusAddr::parse(text)?,
            None => default_bus()?,
        };
        if self.options.trust_broker_uid.is_none() {
            self.options.trust_broker_uid = broker_uid_from_env()?;
        }
        if self.options.token.is_none()
            && let Some(token) = std::env::var_os("PLEXUS_TOKEN")
        {
            let token = token.into_encoded_bytes();
            self.options.token = Some(Token(token.trim_ascii().to_vec()));
        }
        let connection = connect::open(&addr, &self.options).await?;
        let welcome = connection.welcome.clone();
        let (commands, received) = mpsc::unbounded_channel();
        let ids = Arc::new(AtomicU64::new(1));
        let publishes = Arc::new(PublishQueue::new(PUBLISH_QUEUE_BYTES));
        let task = EventLoop::new(
            addr.clone(),
            &self.options,
            ids.clone(),
            received,
            publishes.clone(),
        );
        tokio::spawn(task.run(connection));
        Ok(Client::new(
            commands,
            publishes,
            ids,
            welcome,
            addr,
            self.options,
        ))
    }
}
