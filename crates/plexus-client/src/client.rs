//! The async client: calls, publish, subscribe, serving objects and waiting for names.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use plexus_proto::{BROKER_OBJECT, BusAddr, ErrorCode, Frame, validate_topic};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::command::{Command, CommandSender};
use crate::error::into_result;
use crate::event_queue::event_queue;
use crate::lost_names::LostNames;
use crate::publish_queue::PublishQueue;
use crate::subscription::Subscription;
use crate::worker::{CallContext, DynObject, FnObject, Object, PayloadFn, Serve};
use crate::{BrokerInfo, Error, Options, Payload};

/// Time the client waits past a call's own timeout for the broker's `timeout` answer.
const LOCAL_GRACE: Duration = Duration::from_secs(1);

/// A connection to the bus. Cheap to clone; clones share the connection, which closes when the
/// last clone (and the last [`Subscription`]) is dropped.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    commands: CommandSender,
    /// Room for publishes not yet written, and the loss of any that never will be.
    publishes: Arc<PublishQueue>,
    ids: Arc<AtomicU64>,
    welcome: BrokerInfo,
    addr: BusAddr,
    options: Options,
}

impl Client {
    /// A client on a running socket task that takes `commands`.
    pub(crate) fn new(
        commands: CommandSender,
        publishes: Arc<PublishQueue>,
        ids: Arc<AtomicU64>,
        welcome: BrokerInfo,
        addr: BusAddr,
        options: Options,
    ) -> Client {
        Client {
            inner: Arc::new(Inner {
                commands,
                publishes,
                ids,
                welcome,
                addr,
                options,
            }),
        }
    }

    /// What the broker said when this client connected: connection id, version, frame limit.
    pub fn broker_info(&self) -> &BrokerInfo {
        &self.inner.welcome
    }

    /// The bus address.
    pub fn address(&self) -> &BusAddr {
        &self.inner.addr
    }

    fn next_id(&self) -> u64 {
        self.inner.ids.fetch_add(1, Ordering::Relaxed)
    }

    fn send(&self, command: Command) -> Result<(), Error> {
        self.inner.commands.send(command).map_err(|_| Error::Closed)
    }

    async fn request(&self, frame: Frame) -> Result<Frame, Error> {
        let (answer, rx) = oneshot::channel();
        self.send(Command::Request { frame, answer })?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Calls `object.method` with `params`; `.timeout(d)` sets a timeout, `.await` runs it.
    ///
    /// ```no_run
    /// # async fn demo(client: plexus_client::Client) -> Result<(), plexus_client::Error> {
    /// use serde_json::{Value, json};
    /// let sum: Value = client.call("math", "add", &json!({"a": 10, "b": 32})).await?;
    /// let fast: Value = client
    ///     .call("math", "add", &json!({"a": 1, "b": 2}))
    ///     .timeout(std::time::Duration::from_millis(100))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn call<P: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        object: &str,
        method: &str,
        params: &P,
    ) -> Call<'_, R> {
        Call {
            client: self,
            object: object.to_owned(),
            method: method.to_owned(),
            params: serde_json::to_vec(params),
            timeout: self.inner.options.call_timeout,
            result: PhantomData,
        }
    }

    /// Calls with an explicit timeout.
    pub async fn call_with<P: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        object: &str,
        method: &str,
        params: &P,
        timeout: Duration,
    ) -> Result<R, Error> {
        self.call(object, method, params).timeout(timeout).await
    }

    /// Calls with params and result as raw JSON bytes (for proxies: nothing is parsed). Dropping
    /// the future before it resolves cancels the call at the broker and the worker.
    pub async fn call_raw(
        &self,
        object: &str,
        method: &str,
        params: &[u8],
        timeout: Duration,
    ) -> Result<Bytes, Error> {
        let id = self.next_id();
        let ms = u32::try_from(timeout.as_millis())
            .unwrap_or(u32::MAX)
            .max(1);
        let (answer, rx) = oneshot::channel();
        self.send(Command::Request {
            frame: self.call_frame(id, object, method, ms, params),
            answer,
        })?;
        let mut guard = CancelOnDrop {
            commands: &self.inner.commands,
            id,
            armed: true,
        };
        match tokio::time::timeout(timeout + LOCAL_GRACE, rx).await {
            Err(_) => Err(Error::remote(
                ErrorCode::Timeout,
                format!("no answer within {} ms", timeout.as_millis()),
            )),
            Ok(answer) => {
                guard.armed = false;
                into_result(answer.map_err(|_| Error::Closed)??)
            }
        }
    }

    /// Memfd payloads: the `call` frame, with large params written straight into a sealed
    /// memfd (no inline frame built first) on a Unix socket, where the broker takes memfds.
    fn call_frame(&self, id: u64, object: &str, method: &str, ms: u32, params: &[u8]) -> Frame {
        if params.len() >= crate::memfd::THRESHOLD && matches!(self.inner.addr, BusAddr::Unix(_)) {
            match crate::memfd::create(params) {
                Ok(fd) => return Frame::call(id, object, method, ms, b"").with_fd_payload(fd),
                Err(e) => tracing::debug!(error = %e, "cannot make a memfd; the params go inline"),
            }
        }
        Frame::call(id, object, method, ms, params)
    }

    /// Publishes `payload` on `topic`. Returns once the event is queued for the socket, without
    /// waiting for it to be written: the queue holds at most 1 MiB of publishes, and a publish
    /// that does not fit waits for room. Events from one client reach the broker in the order
    /// they were published, and in order with this client's calls and other requests. If the
    /// connection is lost with events unwritten, the next publish (or [`Client::flush`]) fails
    /// with the reason, once; [`Client::flush`] waits until every event before it is written.
    pub async fn publish<P: Serialize + ?Sized>(
        &self,
        topic: &str,
        payload: &P,
    ) -> Result<(), Error> {
        self.publish_raw(topic, &serde_json::to_vec(payload)?).await
    }

    /// Publishes JSON bytes as they are, as [`Client::publish`] does.
    pub async fn publish_raw(&self, topic: &str, payload: &[u8]) -> Result<(), Error> {
        validate_topic(topic).map_err(|e| Error::invalid_params(e.to_string()))?;
        let publishes = &self.inner.publishes;
        if let Some(lost) = publishes.take_error() {
            return Err(lost);
        }
        let frame = Frame::publish(0, topic, payload, false);
        let sent = match publishes.reserve(frame.wire_len()).await {
            Ok(reserved) => self.send(Command::Publish { frame, reserved }),
            Err(closed) => Err(closed),
        };
        sent.map_err(|closed| publishes.take_error().unwrap_or(closed))
    }

    /// Waits until everything this client sent before — publishes above all — is written to
    /// the socket. Fails if the connection was lost with publishes unwritten since the last
    /// publish or flush that said so.
    pub async fn flush(&self) -> Result<(), Error> {
        let (written, rx) = oneshot::channel();
        let flushed = match self.send(Command::Flush { written }) {
            Ok(()) => rx.await.unwrap_or(Err(Error::Closed)),
            Err(closed) => Err(closed),
        };
        match self.inner.publishes.take_error() {
            Some(lost) => Err(lost),
            None => flushed,
        }
    }

    /// Publishes and waits for the broker's count of subscriptions reached and dropped.
    pub async fn publish_acked<P: Serialize + ?Sized>(
        &self,
        topic: &str,
        payload: &P,
    ) -> Result<Delivery, Error> {
        let frame = Frame::publish(self.next_id(), topic, &serde_json::to_vec(payload)?, true);
        let body = into_result(self.request(frame).await?)?;
        Ok(serde_json::from_slice(&body)?)
    }

    /// Subscribes to a pattern (`*` = one segment, `>` = the rest).
    pub async fn subscribe(&self, pattern: &str) -> Result<Subscription, Error> {
        self.subscribe_with(pattern, None).await
    }

    /// Subscribes to a pattern as a member of queue group `group`: each matching event goes to
    /// one member of the group (round-robin), not to all of them.
    pub async fn subscribe_queue(&self, pattern: &str, group: &str) -> Result<Subscription, Error> {
        self.subscribe_with(pattern, Some(group)).await
    }

    async fn subscribe_with(
        &self,
        pattern: &str,
        group: Option<&str>,
    ) -> Result<Subscription, Error> {
        let id = self.next_id();
        let (events, rx) = event_queue(self.inner.options.subscription_capacity);
        let (answer, answered) = oneshot::channel();
        self.send(Command::Subscribe {
            id,
            pattern: pattern.to_owned(),
            group: group.map(str::to_owned),
            events,
            answer,
        })?;
        let subscription = Subscription::new(id, rx, self.inner.commands.clone());
        into_result(answered.await.map_err(|_| Error::Closed)??)?;
        Ok(subscription)
    }

    /// Serves `object` under `name`, alone.
    pub async fn serve<O: Object>(&self, name: &str, object: O) -> Result<(), Error> {
        self.register(name, false, Arc::new(object)).await
    }

    /// Serves `object` under `name` with a contract declared on the returned builder, when it
    /// is awaited: `client.serve_with("math", calc).method("add", params, result).await`. The
    /// broker then checks every call's params and every result against the schemas.
    pub fn serve_with<O: Object>(&self, name: &str, object: O) -> Serve<'_, O> {
        Serve::new(self, name, object)
    }

    /// Serves `object` under `name` as a member of a queue group.
    pub async fn serve_shared<O: Object>(&self, name: &str, object: O) -> Result<(), Error> {
        self.register(name, true, Arc::new(object)).await
    }

    /// Serves a closure `(method, params, ctx) -> future of result` under `name`.
    pub async fn serve_fn<F, Fut>(&self, name: &str, f: F) -> Result<(), Error>
    where
        F: Fn(String, Value, CallContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, Error>> + Send + 'static,
    {
        self.serve(name, FnObject(f)).await
    }

    /// Serves a closure `(method, params) -> future of result` under `name` with params and
    /// result as raw JSON bytes: nothing is parsed, so a handler that passes a large payload on
    /// (or answers with its params) costs no JSON work. The result must be JSON.
    pub async fn serve_raw<F, Fut>(&self, name: &str, f: F) -> Result<(), Error>
    where
        F: Fn(String, Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, Error>> + Send + 'static,
    {
        self.serve_payload(name, move |method, params: Payload| {
            let answer = params.to_bytes().map(|params| f(method, params));
            async move { Ok(Payload::from(answer?.await?)) }
        })
        .await
    }

    /// Serves a closure `(method, params) -> future of result` under `name` with params and
    /// result as [`Payload`]s: JSON bytes, or — for payloads of 128 KiB and more from a native
    /// peer on the Unix socket — a sealed memfd nobody has read. Answering with the params'
    /// own `Payload` hands the memfd back to the caller unread, so an echo or a pass-through
    /// costs no copy at all; [`Payload::to_bytes`] reads it. The result must be JSON.
    ///
    /// ```no_run
    /// # async fn demo(client: plexus_client::Client) -> Result<(), plexus_client::Error> {
    /// client.serve_payload("echo", |_method, params| async move { Ok(params) }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn serve_payload<F, Fut>(&self, name: &str, f: F) -> Result<(), Error>
    where
        F: Fn(String, Payload) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Payload, Error>> + Send + 'static,
    {
        self.register(name, false, Arc::new(PayloadFn(f))).await
    }

    async fn register(
        &self,
        name: &str,
        shared: bool,
        object: Arc<dyn DynObject>,
    ) -> Result<(), Error> {
        let id = self.next_id();
        let (answer, rx) = oneshot::channel();
        self.send(Command::Serve {
            id,
            name: name.to_owned(),
            shared,
            object,
            answer,
        })?;
        let result = rx.await.map_err(|_| Error::Closed)?.and_then(into_result);
        if let Err(e) = result {
            let _ = self.send(Command::Unserve {
                id,
                name: name.to_owned(),
                answer: None,
            });
            return Err(e);
        }
        Ok(())
    }

    /// The names this client serves and loses from now on: when the broker went away and
    /// registering a name again on the new connection failed (another client took it meanwhile),
    /// the client stops serving it, logs an error, and tells every [`LostNames`]. A worker that
    /// must own its names can end, or retry [`Client::serve`], when it hears of one.
    pub fn lost_names(&self) -> LostNames {
        let (listener, losses) = mpsc::unbounded_channel();
        let _ = self.send(Command::ListenLostNames { listener });
        LostNames::new(losses)
    }

    /// Stops serving `name` and gives it up at the broker.
    pub async fn unserve(&self, name: &str) -> Result<(), Error> {
        let (answer, rx) = oneshot::channel();
        self.send(Command::Unserve {
            id: self.next_id(),
            name: name.to_owned(),
            answer: Some(answer),
        })?;
        into_result(rx.await.map_err(|_| Error::Closed)??).map(|_| ())
    }

    /// Waits until every name is registered, or fails with `timeout` naming the missing ones.
    pub async fn wait_for(&self, names: &[&str], timeout: Duration) -> Result<(), Error> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let params = json!({ "names": names, "timeout_ms": ms });
        let _: Value = self
            .call(BROKER_OBJECT, "wait_for", &params)
            .timeout(timeout + LOCAL_GRACE)
            .await?;
        Ok(())
    }

    /// Round-trip time of a ping to the broker.
    pub async fn ping(&self) -> Result<Duration, Error> {
        let started = Instant::now();
        into_result(self.request(Frame::ping(self.next_id(), b"")).await?)?;
        Ok(started.elapsed())
    }
}

/// What a publish with acknowledgement reached.
#[derive(Debug, Clone, Copy, serde::Deserialize, PartialEq, Eq)]
pub struct Delivery {
    /// Subscriptions the event was queued for.
    pub delivered: u64,
    /// Subscriptions whose queue was full.
    pub dropped: u64,
}

/// Sends a cancel for a call whose future is dropped before its answer arrived.
struct CancelOnDrop<'a> {
    commands: &'a CommandSender,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.commands.send(Command::Cancel { id: self.id });
        }
    }
}

/// A call being built: set `.timeout(d)`, then `.await` it.
#[must_use = "a call does nothing until awaited"]
pub struct Call<'a, R> {
    client: &'a Client,
    object: String,
    method: String,
    params: Result<Vec<u8>, serde_json::Error>,
    timeout: Duration,
    result: PhantomData<fn() -> R>,
}

impl<R> Call<'_, R> {
    /// The call's timeout (the broker answers `timeout` after it and cancels the call).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<'a, R: DeserializeOwned + 'a> IntoFuture for Call<'a, R> {
    type Output = Result<R, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<R, Error>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let params = self.params?;
            let body = self
                .client
                .call_raw(&self.object, &self.method, &params, self.timeout)
                .await?;
            let text: &[u8] = if body.is_empty() { b"null" } else { &body };
            Ok(serde_json::from_slice(text)?)
        })
    }
}
