//! A blocking client for programs without an async runtime: a thin wrapper over the async
//! [`crate::Client`] running on a private runtime thread.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::runtime::Runtime;

use crate::{CallContext, Error, Event};

/// A blocking connection to the bus.
///
/// ```no_run
/// let client = plexus_client::blocking::Client::connect()?;
/// let sum: serde_json::Value = client.call("math", "add", &serde_json::json!({"a": 1, "b": 2}))?;
/// # Ok::<(), plexus_client::Error>(())
/// ```
///
/// Dropping the last clone writes the events still queued (see [`Client::flush`]) before the
/// private runtime stops, waiting at most 5 s.
#[derive(Clone)]
pub struct Client {
    inner: crate::Client,
    runtime: Arc<Runtime>,
    _flush_on_drop: Arc<FlushOnDrop>,
}

/// How long dropping the last blocking client waits for queued events to be written.
const FLUSH_ON_DROP: Duration = Duration::from_secs(5);

/// Writes what the blocking clients queued when the last of them goes, while the runtime that
/// writes it still runs.
struct FlushOnDrop {
    inner: crate::Client,
    runtime: Arc<Runtime>,
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        let inner = &self.inner;
        let flush = async { tokio::time::timeout(FLUSH_ON_DROP, inner.flush()).await };
        let _ = self.runtime.block_on(flush);
    }
}

fn runtime() -> Result<Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?)
}

impl Client {
    fn new(inner: crate::Client, runtime: Runtime) -> Client {
        let runtime = Arc::new(runtime);
        let flush_on_drop = FlushOnDrop {
            inner: inner.clone(),
            runtime: runtime.clone(),
        };
        Client {
            inner,
            runtime,
            _flush_on_drop: Arc::new(flush_on_drop),
        }
    }

    /// Connects to `PLEXUS_BUS`, else the default socket.
    pub fn connect() -> Result<Client, Error> {
        let runtime = runtime()?;
        let inner = runtime.block_on(crate::Client::connect())?;
        Ok(Client::new(inner, runtime))
    }

    /// Connects to `unix:/path`, `tcp://host:port`, or a socket path.
    pub fn connect_to(addr: &str) -> Result<Client, Error> {
        let runtime = runtime()?;
        let inner = runtime.block_on(crate::Client::connect_to(addr))?;
        Ok(Client::new(inner, runtime))
    }

    /// Calls `object.method` with the default timeout.
    pub fn call<P: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        object: &str,
        method: &str,
        params: &P,
    ) -> Result<R, Error> {
        self.runtime
            .block_on(self.inner.call(object, method, params).into_future())
    }

    /// Calls with an explicit timeout.
    pub fn call_with<P: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        object: &str,
        method: &str,
        params: &P,
        timeout: Duration,
    ) -> Result<R, Error> {
        self.runtime
            .block_on(self.inner.call_with(object, method, params, timeout))
    }

    /// Publishes; returns once the event is queued for the socket (see
    /// [`crate::Client::publish`]).
    pub fn publish<P: Serialize + ?Sized>(&self, topic: &str, payload: &P) -> Result<(), Error> {
        self.runtime.block_on(self.inner.publish(topic, payload))
    }

    /// Waits until everything sent before is written to the socket (see
    /// [`crate::Client::flush`]).
    pub fn flush(&self) -> Result<(), Error> {
        self.runtime.block_on(self.inner.flush())
    }

    /// Subscribes; the result is an iterator of events.
    pub fn subscribe(&self, pattern: &str) -> Result<Subscription, Error> {
        let inner = self.runtime.block_on(self.inner.subscribe(pattern))?;
        Ok(Subscription {
            inner,
            runtime: self.runtime.clone(),
        })
    }

    /// Subscribes as a member of queue group `group` (see [`crate::Client::subscribe_queue`]).
    pub fn subscribe_queue(&self, pattern: &str, group: &str) -> Result<Subscription, Error> {
        let inner = self
            .runtime
            .block_on(self.inner.subscribe_queue(pattern, group))?;
        Ok(Subscription {
            inner,
            runtime: self.runtime.clone(),
        })
    }

    /// Serves a blocking function `(method, params) -> result` under `name`; each call runs on a
    /// blocking thread.
    pub fn serve_fn<F>(&self, name: &str, f: F) -> Result<(), Error>
    where
        F: Fn(&str, Value) -> Result<Value, Error> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.runtime.block_on(self.inner.serve_fn(
            name,
            move |method: String, params: Value, _ctx: CallContext| {
                let f = f.clone();
                async move {
                    tokio::task::spawn_blocking(move || f(&method, params))
                        .await
                        .map_err(|e| {
                            Error::remote(
                                crate::ErrorCode::Internal,
                                format!("handler failed: {e}"),
                            )
                        })?
                }
            },
        ))
    }

    /// Waits until every name is registered.
    pub fn wait_for(&self, names: &[&str], timeout: Duration) -> Result<(), Error> {
        self.runtime.block_on(self.inner.wait_for(names, timeout))
    }

    /// The async client underneath.
    pub fn as_async(&self) -> &crate::Client {
        &self.inner
    }
}

/// A blocking subscription: an iterator of events.
pub struct Subscription {
    inner: crate::Subscription,
    runtime: Arc<Runtime>,
}

impl Subscription {
    /// The next event within `timeout`, or `None`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Event> {
        self.runtime.block_on(async {
            tokio::time::timeout(timeout, self.inner.next())
                .await
                .ok()
                .flatten()
        })
    }
}

impl Iterator for Subscription {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.runtime.block_on(self.inner.next())
    }
}
