//! The cluster link: one task that owns the NATS connection and is a participant of the router
//! like a connection. Frames the router queues to it are calls for other brokers, cancels,
//! events to pass on, name claims and releases, and the answers to calls other brokers sent
//! here; what arrives from NATS (calls, events, cancels) it hands to the router.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use async_nats::{
    Client, ClientError, ConnectOptions, Event, HeaderMap, Message, Request, ServerAddr, Subject,
    Subscriber,
};
use futures_util::StreamExt;
use plexus_proto::{ErrorCode, Frame, Header, Kind, flags};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tracing::{info, warn};

use super::ClusterConfig;
use super::port::{CLUSTER_OBJECT, ClusterPort};
use super::stats::{ClusterStats, LinkState};
use super::store::{self, Refusal};
use super::subjects::Subjects;
use crate::conn_id::ConnId;
use crate::outbox::{self, OutboxReceiver};
use crate::peer::PeerInfo;
use crate::router::Router;
use crate::shutdown::Shutdown;

/// Header: the call's timeout in ms.
const TIMEOUT: &str = "Plexus-Timeout";
/// Header: the node that sent the call.
const CALLER: &str = "Plexus-Caller";
/// Header: `<node>/<routed id>`, naming a call for its cancel.
const CALL_KEY: &str = "Plexus-Call";
/// Header: `reply` or `error`, on an answer.
const ANSWER: &str = "Plexus-Answer";
/// Header: the answer frame's aux (an error's code).
const AUX: &str = "Plexus-Aux";
/// Header: how many strings the answer's body starts with.
const STRINGS: &str = "Plexus-Strings";
/// Header: the node an event was published on.
const ORIGIN: &str = "Plexus-Origin";

/// Messages from NATS waiting for the link task in each of its two inbound queues, calls and
/// events (and at most `outbox_limit` bytes in each); past this an event is dropped and counted
/// (`events_in_dropped`), a call answered `overloaded` (`calls_in_refused`). Calls have a queue
/// of their own so that a flood of events never crowds them out.
const INBOUND_QUEUE: usize = 1024;
/// Messages the NATS client holds for one subscription before the link's listener takes them;
/// past this it drops them (counted as `messages_in_dropped`, as far as the client reports
/// them). The listeners never wait and empty this queue whenever they run, so it holds what
/// arrived since: one read of the socket's buffer, at most.
const SUBSCRIPTION_QUEUE: usize = 65_536;
/// Most names `plexus.cluster.names` lists.
const LIST_LIMIT: usize = 10_000;
/// How long a publish may wait for room in the NATS client's queue before the event is dropped.
const PUBLISH_WAIT: Duration = Duration::from_millis(100);

/// Detaches the link from the router when dropped, also when its task unwinds.
struct Joined {
    router: Arc<Router>,
    conn: ConnId,
}

impl Drop for Joined {
    fn drop(&mut self) {
        self.router.leave_cluster(self.conn);
    }
}

/// Attaches the link to the router now, then returns the task that runs it until shutdown:
/// it connects to NATS (and keeps reconnecting), opens the name store, and moves traffic both
/// ways.
pub fn run(
    router: Arc<Router>,
    config: ClusterConfig,
    shutdown: Shutdown,
) -> impl Future<Output = ()> + Send + 'static {
    let (outbox, rx) = outbox::outbox(router.config().outbox_limit);
    let conn = router.next_conn_id();
    let mut peer = PeerInfo::from_tcp(std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    peer.client = format!("cluster:{}", config.name);
    peer.transport = "nats";
    peer.addr = Some(config.servers.join(","));
    let stats = Arc::new(ClusterStats::default());
    router.attach_cluster(peer, outbox, ClusterPort::new(conn, &config, stats.clone()));
    let joined = Joined { router, conn };
    run_joined(joined, rx, config, stats, shutdown)
}

async fn run_joined(
    joined: Joined,
    rx: OutboxReceiver,
    config: ClusterConfig,
    stats: Arc<ClusterStats>,
    shutdown: Shutdown,
) {
    let (router, conn) = (joined.router.clone(), joined.conn);
    let (nats_events, nats_events_rx) = mpsc::unbounded_channel();
    let client = match connect(&config, stats.clone(), nats_events).await {
        Ok(client) => client,
        Err(e) => {
            warn!(error = %e, "cannot set up the NATS connection; this broker stays out of the cluster");
            shutdown.requested().await;
            return;
        }
    };
    let (events_inbox, events_rx) = Inbox::new(router.config().outbox_limit);
    let (calls_inbox, calls_rx) = Inbox::new(router.config().outbox_limit);
    let mut link = Link {
        router: router.clone(),
        conn,
        subjects: Subjects::new(&config.name),
        config,
        stats,
        client,
        store: None,
        opening: false,
        out_calls: HashMap::new(),
        requests: JoinSet::new(),
        in_calls: HashMap::new(),
        in_keys: HashMap::new(),
        next_in: 1,
        held: HashMap::new(),
        kv_tasks: JoinSet::new(),
        listeners: JoinSet::new(),
        events_inbox,
        calls_inbox,
        renewed: Instant::now(),
    };
    link.listen_to_cluster().await;
    link.run(rx, [events_rx, calls_rx], nats_events_rx, &shutdown)
        .await;
    link.leave().await;
    drop(joined);
}

/// Opens the NATS client (it connects, and reconnects, in the background). A first attempt is
/// made at once so that, when it fails, the log and `plexus.stats` say exactly why (a refused
/// token, a certificate no CA signs); later attempts only name the kind of failure.
async fn connect(
    config: &ClusterConfig,
    stats: Arc<ClusterStats>,
    events: mpsc::UnboundedSender<Event>,
) -> Result<Client, String> {
    let servers = config
        .servers
        .iter()
        .map(|s| s.parse::<ServerAddr>().map_err(|e| format!("{s}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let first = options(config, stats.clone(), events.clone()).await?;
    match first.connect(servers.clone()).await {
        Ok(client) => return Ok(client),
        Err(e) => {
            let kind = e.kind().to_string();
            let why = explain(&kind, &e.to_string());
            warn!(error = %why, "cannot connect to the cluster's NATS; retrying");
            stats.set_nats_error(Some(why));
        }
    }
    options(config, stats, events)
        .await?
        .retry_on_initial_connect()
        .connect(servers)
        .await
        .map_err(|e| e.to_string())
}

/// The NATS client's settings: who this broker is, how it logs in, how it reconnects, and what
/// it counts of the connection's events.
async fn options(
    config: &ClusterConfig,
    stats: Arc<ClusterStats>,
    events: mpsc::UnboundedSender<Event>,
) -> Result<ConnectOptions, String> {
    let mut options = ConnectOptions::new()
        .name(format!("plexus {}/{}", config.name, config.node))
        .max_reconnects(None)
        .subscription_capacity(SUBSCRIPTION_QUEUE)
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| Duration::from_millis(100 * attempts.min(10) as u64))
        .event_callback(move |event| {
            let stats = stats.clone();
            let events = events.clone();
            async move {
                match &event {
                    Event::Connected => {
                        stats.set_state(LinkState::Connected);
                        stats.set_nats_error(None);
                        ClusterStats::bump(&stats.connects);
                    }
                    Event::Disconnected | Event::Closed => stats.set_state(LinkState::Disconnected),
                    Event::SlowConsumer(_) => ClusterStats::bump(&stats.messages_in_dropped),
                    // Keep the detailed reason of the first attempt while the kind holds.
                    Event::ClientError(ClientError::Other(kind))
                        if !stats
                            .nats_error()
                            .is_some_and(|e| e.starts_with(kind.as_str())) =>
                    {
                        let why = explain(kind, kind);
                        warn!(error = %why, "cannot connect to the cluster's NATS; retrying");
                        stats.set_nats_error(Some(why));
                    }
                    _ => {}
                }
                let _ = events.send(event);
            }
        });
    if let Some(path) = &config.credentials {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| format!("cluster_credentials {}: {e}", path.display()))?;
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if let Some(ca) = &config.tls_ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if config.tls_required {
        options = options.require_tls(true);
    }
    Ok(options)
}

/// A failure to connect to NATS (`detail`, which starts with its `kind`), with what to check.
fn explain(kind: &str, detail: &str) -> String {
    let tls = detail.contains("certificate") || detail.contains("TLS") || detail.contains("tls");
    let hint = match kind {
        "authorization violation" => {
            "the NATS server refused this broker's credentials: check cluster_token or cluster_credentials"
        }
        "failed signing nonce" => {
            "the nkey of cluster_credentials could not sign the server's challenge"
        }
        _ if tls => {
            "the TLS handshake with the NATS server failed: cluster_tls_ca must have signed the server's certificate, and a server that verifies clients needs cluster_tls_cert and cluster_tls_key"
        }
        "timed out" | "IO error" | "DNS error" => "no NATS server of the cluster could be reached",
        _ => "",
    };
    if hint.is_empty() {
        detail.to_owned()
    } else {
        format!("{detail} ({hint})")
    }
}

/// A name this broker holds in the cluster.
struct Held {
    shared: bool,
    revision: u64,
    listener: AbortHandle,
}

/// A call another broker sent here, waiting for its answer.
struct InCall {
    reply: Subject,
    key: Option<String>,
}

/// Something NATS delivered.
enum Inbound {
    /// A call to a name held here.
    Call(Message),
    /// An event.
    Event(Message),
    /// A caller gave up on a call.
    Cancel(Message),
}

impl Inbound {
    fn message(&self) -> &Message {
        match self {
            Inbound::Call(m) | Inbound::Event(m) | Inbound::Cancel(m) => m,
        }
    }
}

/// A queue from the listeners (one task per NATS subscription) to the link task, bounded in
/// messages and in payload bytes. Listeners never wait on it: what does not fit is refused at
/// once, so the NATS client's own queues stay short and nothing piles up unseen.
#[derive(Clone)]
struct Inbox {
    tx: mpsc::Sender<Inbound>,
    /// Payload bytes queued.
    bytes: Arc<AtomicUsize>,
    limit: usize,
}

/// Why a message was not queued.
enum Refused {
    /// The queue is full; the message is given back.
    Full(Box<Inbound>),
    /// The link is gone.
    Closed,
}

impl Inbox {
    /// An empty queue holding at most `limit` payload bytes, and its receiving end.
    fn new(limit: usize) -> (Inbox, mpsc::Receiver<Inbound>) {
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        let inbox = Inbox {
            tx,
            bytes: Arc::new(AtomicUsize::new(0)),
            limit,
        };
        (inbox, rx)
    }

    /// Queues `inbound` if it fits.
    fn offer(&self, inbound: Inbound) -> Result<(), Refused> {
        let len = inbound.message().payload.len();
        if self.bytes.load(Ordering::Relaxed) + len > self.limit {
            return Err(Refused::Full(Box::new(inbound)));
        }
        self.bytes.fetch_add(len, Ordering::Relaxed);
        self.tx.try_send(inbound).map_err(|e| {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            match e {
                mpsc::error::TrySendError::Full(inbound) => Refused::Full(Box::new(inbound)),
                mpsc::error::TrySendError::Closed(_) => Refused::Closed,
            }
        })
    }

    /// The link took `inbound` off the queue.
    fn taken(&self, inbound: &Inbound) {
        self.bytes
            .fetch_sub(inbound.message().payload.len(), Ordering::Relaxed);
    }
}

/// A claim made: its revision and the subscription its calls arrive on.
type Claimed = Result<(u64, Box<Subscriber>), Refusal>;

/// What a name store task finished.
enum KvDone {
    Opened(Box<Result<kv::Store, String>>),
    Claimed {
        token: u64,
        name: String,
        shared: bool,
        result: Claimed,
    },
    Renewed {
        name: String,
        result: Result<u64, Refusal>,
    },
    Listed(Frame),
}

struct Link {
    router: Arc<Router>,
    conn: ConnId,
    config: ClusterConfig,
    subjects: Subjects,
    stats: Arc<ClusterStats>,
    client: Client,
    store: Option<kv::Store>,
    opening: bool,
    /// Calls sent to other brokers, by routed id.
    out_calls: HashMap<u64, AbortHandle>,
    requests: JoinSet<u64>,
    /// Calls from other brokers by the id the link gave them here.
    in_calls: HashMap<u64, InCall>,
    /// The same, by their callers' keys (for cancels).
    in_keys: HashMap<String, u64>,
    next_in: u64,
    held: HashMap<String, Held>,
    kv_tasks: JoinSet<KvDone>,
    listeners: JoinSet<()>,
    /// Events and cancels from NATS.
    events_inbox: Inbox,
    /// Calls from other brokers.
    calls_inbox: Inbox,
    renewed: Instant,
}

impl Link {
    async fn run(
        &mut self,
        mut rx: OutboxReceiver,
        [mut events, mut calls]: [mpsc::Receiver<Inbound>; 2],
        mut nats_events: mpsc::UnboundedReceiver<Event>,
        shutdown: &Shutdown,
    ) {
        let stop = shutdown.requested();
        tokio::pin!(stop);
        let mut batch = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = &mut stop => return,
                n = rx.recv_batch(&mut batch) => {
                    if n == 0 {
                        return;
                    }
                    let mut taken = 0;
                    for frame in batch.drain(..) {
                        taken += outbox::held(&frame);
                        self.on_frame(frame).await;
                    }
                    rx.release(taken);
                }
                Some(message) = calls.recv() => self.on_message(message).await,
                Some(message) = events.recv() => self.on_message(message).await,
                Some(event) = nats_events.recv() => self.nats_event(event),
                Some(Ok(done)) = self.kv_tasks.join_next() => self.kv_done(done),
                Some(Ok(routed)) = self.requests.join_next() => {
                    self.out_calls.remove(&routed);
                }
                Some(_) = self.listeners.join_next() => {}
                _ = tick.tick() => self.tick(),
            }
        }
    }

    /// A frame the router queued to the link.
    async fn on_frame(&mut self, frame: Frame) {
        match frame.kind() {
            Kind::Call if frame.string(0) == CLUSTER_OBJECT => self.own_call(&frame),
            Kind::Call => self.call_out(frame),
            Kind::Cancel => self.cancel_out(frame.id()).await,
            Kind::Reply | Kind::Error => self.answer_in(frame).await,
            Kind::Publish => self.publish_out(&frame).await,
            Kind::Register => self.claim(&frame),
            Kind::Unregister => self.release(frame.string(0)),
            _ => {}
        }
    }

    /// Answers `routed` on the router's side, as the broker (codes pass as they are).
    fn answer(&self, frame: Frame) {
        self.router.bounce(self.conn, [frame]);
    }

    /// Sends a call to the broker that has its object, as a NATS request.
    fn call_out(&mut self, frame: Frame) {
        let routed = frame.id();
        let (object, method) = (frame.string(0), frame.string(1));
        if !self.stats.up() {
            ClusterStats::bump(&self.stats.calls_unavailable);
            return self.answer(unavailable(routed, object, &self.config.name));
        }
        let max_payload = self.client.server_info().max_payload;
        if frame.payload().len() > max_payload {
            let msg = format!(
                "the call's params are {} bytes, more than one NATS message carries between brokers (max_payload = {max_payload} bytes, set on the NATS server)",
                frame.payload().len()
            );
            return self.answer(Frame::error(routed, ErrorCode::FrameTooLarge, &msg, b""));
        }
        ClusterStats::bump(&self.stats.calls_out);
        let subject = self.subjects.call(object, method);
        let mut headers = HeaderMap::new();
        headers.insert(TIMEOUT, frame.aux().to_string().as_str());
        headers.insert(CALLER, self.config.node.as_str());
        headers.insert(CALL_KEY, format!("{}/{routed}", self.config.node).as_str());
        // The router answers `timeout` at the deadline; the request outlives it a little so
        // that it never answers first.
        let wait = Duration::from_millis(u64::from(frame.aux())) + Duration::from_secs(1);
        let request = Request::new()
            .headers(headers)
            .payload(frame.payload())
            .timeout(Some(wait));
        let (client, router, stats, conn) = (
            self.client.clone(),
            self.router.clone(),
            self.stats.clone(),
            self.conn,
        );
        let (object, cluster) = (object.to_owned(), self.config.name.clone());
        let handle = self.requests.spawn(async move {
            let started = Instant::now();
            let answer = match client.send_request(subject, request).await {
                Ok(message) => {
                    stats.record_latency(started.elapsed());
                    Some(answer_frame(routed, &message))
                }
                Err(e) => match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => {
                        ClusterStats::bump(&stats.calls_no_responders);
                        let msg = format!(
                            "no object named '{object}' is registered on this broker or any other in cluster '{cluster}'"
                        );
                        let data = json!({ "object": object }).to_string();
                        Some(Frame::error(
                            routed,
                            ErrorCode::NoSuchObject,
                            &msg,
                            data.as_bytes(),
                        ))
                    }
                    async_nats::RequestErrorKind::TimedOut => None,
                    async_nats::RequestErrorKind::Other => {
                        ClusterStats::bump(&stats.calls_unavailable);
                        Some(unavailable(routed, &object, &cluster))
                    }
                },
            };
            if let Some(answer) = answer {
                router.bounce(conn, [answer]);
            }
            routed
        });
        self.out_calls.insert(routed, handle);
    }

    /// The caller of `routed` gave up (or its deadline passed): stop waiting, and tell the
    /// broker serving it.
    async fn cancel_out(&mut self, routed: u64) {
        if let Some(handle) = self.out_calls.remove(&routed) {
            handle.abort();
            let mut headers = HeaderMap::new();
            headers.insert(CALL_KEY, format!("{}/{routed}", self.config.node).as_str());
            let subject = self.subjects.cancels();
            self.publish(subject.into(), headers, bytes::Bytes::new())
                .await;
        }
    }

    /// NATS is gone: every call waiting on another broker is answered `unavailable` at once.
    fn fail_calls_out(&mut self) {
        for (routed, handle) in self.out_calls.drain() {
            handle.abort();
            ClusterStats::bump(&self.stats.calls_unavailable);
            let frame = Frame::error(
                routed,
                ErrorCode::Unavailable,
                &format!(
                    "the connection to cluster '{}' (NATS) was lost while the call was with another broker; it may or may not have run",
                    self.config.name
                ),
                b"",
            );
            self.router.bounce(self.conn, [frame]);
        }
    }

    /// An answer from a local worker (or the router) to a call another broker sent here.
    async fn answer_in(&mut self, frame: Frame) {
        let Some(call) = self.in_calls.remove(&frame.id()) else {
            return;
        };
        if let Some(key) = &call.key {
            self.in_keys.remove(key);
        }
        let max_payload = self.client.server_info().max_payload;
        let frame = if frame.body().len() > max_payload {
            let msg = format!(
                "the answer is {} bytes, more than one NATS message carries between brokers (max_payload = {max_payload} bytes, set on the NATS server)",
                frame.body().len()
            );
            Frame::error(frame.id(), ErrorCode::FrameTooLarge, &msg, b"")
        } else {
            frame
        };
        self.publish(call.reply, answer_headers(&frame), frame.body().clone())
            .await;
    }

    /// Sends a local publish on to the cluster, tagged with this node.
    async fn publish_out(&mut self, frame: &Frame) {
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, self.config.node.as_str());
        let subject = self.subjects.event(frame.string(0));
        if self.publish(subject.into(), headers, frame.payload()).await {
            ClusterStats::bump(&self.stats.events_out);
        } else {
            ClusterStats::bump(&self.stats.events_out_dropped);
        }
    }

    /// Publishes unless NATS is down or its client's queue stays full; whether it did.
    async fn publish(&self, subject: Subject, headers: HeaderMap, payload: bytes::Bytes) -> bool {
        if !self.stats.up() {
            return false;
        }
        let publish = self.client.publish_with_headers(subject, headers, payload);
        matches!(
            tokio::time::timeout(PUBLISH_WAIT, publish).await,
            Ok(Ok(()))
        )
    }

    /// Subscribes to the cluster's events and cancels.
    async fn listen_to_cluster(&mut self) {
        let events = self.client.subscribe(self.subjects.all_events()).await;
        let cancels = self.client.subscribe(self.subjects.cancels()).await;
        match (events, cancels) {
            (Ok(events), Ok(cancels)) => {
                let inbox = self.events_inbox.clone();
                self.listen(events, inbox.clone(), Inbound::Event);
                self.listen(cancels, inbox, Inbound::Cancel);
            }
            (Err(e), _) | (_, Err(e)) => {
                warn!(error = %e, "cannot subscribe to the cluster's events; events from other brokers will not arrive")
            }
        }
    }

    /// Forwards a subscription's messages to the link task until it is aborted. When the link's
    /// inbound queue is full, an event is dropped and counted (`events_in_dropped`), a call
    /// answered `overloaded` at once (`calls_in_refused`), and a cancel waits for room. The
    /// listener is exempt from tokio's cooperative budget: whenever it runs it empties the NATS
    /// client's queue, so that what this broker cannot take is dropped (and counted) here.
    fn listen(
        &mut self,
        mut subscriber: Subscriber,
        inbox: Inbox,
        tag: fn(Message) -> Inbound,
    ) -> AbortHandle {
        let (stats, client) = (self.stats.clone(), self.client.clone());
        self.listeners.spawn(tokio::task::unconstrained(async move {
            while let Some(message) = subscriber.next().await {
                match inbox.offer(tag(message)) {
                    Ok(()) => {}
                    Err(Refused::Closed) => return,
                    Err(Refused::Full(refused)) => match *refused {
                        Inbound::Event(_) => ClusterStats::bump(&stats.events_in_dropped),
                        Inbound::Call(message) => {
                            ClusterStats::bump(&stats.calls_in_refused);
                            refuse_call(&client, message).await;
                        }
                        cancel @ Inbound::Cancel(_) => {
                            if inbox.tx.send(cancel).await.is_err() {
                                return;
                            }
                        }
                    },
                }
            }
        }))
    }

    /// Something from NATS.
    async fn on_message(&mut self, inbound: Inbound) {
        match &inbound {
            Inbound::Call(_) => self.calls_inbox.taken(&inbound),
            Inbound::Event(_) | Inbound::Cancel(_) => self.events_inbox.taken(&inbound),
        }
        match inbound {
            Inbound::Call(message) => self.call_in(message).await,
            Inbound::Event(message) => self.event_in(&message),
            Inbound::Cancel(message) => self.cancel_in(&message),
        }
    }

    /// A call from another broker to a name held here: routed like a local caller's.
    async fn call_in(&mut self, message: Message) {
        let Some(reply) = message.reply.clone() else {
            return;
        };
        let object = self.object_of(&message.subject);
        let method = Subjects::method_of(&message.subject);
        let (Some(object), Some(method)) = (object, method) else {
            return;
        };
        ClusterStats::bump(&self.stats.calls_in);
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        let timeout_ms = header(TIMEOUT)
            .and_then(|t| t.parse::<u32>().ok())
            .unwrap_or(0);
        let key = header(CALL_KEY);
        let id = self.next_in;
        self.next_in += 1;
        if let Some(key) = &key {
            self.in_keys.insert(key.clone(), id);
        }
        self.in_calls.insert(id, InCall { reply, key });
        let frame = Frame::call(id, &object, &method, timeout_ms, &message.payload);
        self.router.handle(self.conn, [frame]);
    }

    /// The object a call subject names, if it is one this broker holds and exports.
    fn object_of(&self, subject: &str) -> Option<String> {
        let mut tokens = subject.rsplit('.');
        tokens.next()?;
        let object = super::subjects::unescape(tokens.next()?)?;
        self.held.contains_key(&object).then_some(object)
    }

    /// An event from another broker, delivered to the subscribers here.
    fn event_in(&mut self, message: &Message) {
        let origin = message.headers.as_ref().and_then(|h| h.get(ORIGIN));
        if origin.is_none_or(|o| o.as_str() == self.config.node) {
            return;
        }
        let Some(topic) = self.subjects.topic_of(&message.subject) else {
            return;
        };
        if !self
            .config
            .import_topics
            .iter()
            .any(|p| plexus_proto::topic_matches(p, topic))
        {
            return;
        }
        ClusterStats::bump(&self.stats.events_in);
        let frame = Frame::publish(0, topic, &message.payload, false);
        self.router.handle(self.conn, [frame]);
    }

    /// A caller on another broker gave up on a call it sent here.
    fn cancel_in(&mut self, message: &Message) {
        let key = message.headers.as_ref().and_then(|h| h.get(CALL_KEY));
        let Some(id) = key.and_then(|k| self.in_keys.remove(k.as_str())) else {
            return;
        };
        self.in_calls.remove(&id);
        self.router.handle(self.conn, [Frame::cancel(id)]);
    }

    /// A call to the link's own object, `plexus.cluster`.
    fn own_call(&mut self, frame: &Frame) {
        let routed = frame.id();
        if frame.string(1) != "names" {
            let msg = format!(
                "the object '{CLUSTER_OBJECT}' has no method '{}'; it has names",
                frame.string(1)
            );
            return self.answer(Frame::error(routed, ErrorCode::NoSuchMethod, &msg, b""));
        }
        let Some(store) = self.store.clone() else {
            return self.answer(Frame::error(
                routed,
                ErrorCode::Unavailable,
                &self.store_unreachable(),
                b"",
            ));
        };
        self.kv_tasks.spawn(async move {
            let answer = match store::list(&store, LIST_LIMIT).await {
                Ok(names) => Frame::reply(routed, json!(names).to_string().as_bytes()),
                Err(e) => Frame::error(
                    routed,
                    ErrorCode::Unavailable,
                    &format!("the cluster's name store did not answer: {e}"),
                    b"",
                ),
            };
            KvDone::Listed(answer)
        });
    }

    fn store_unreachable(&self) -> String {
        format!(
            "the name store of cluster '{}' (JetStream key-value bucket {}) cannot be reached (NATS is {}); exported names cannot be registered until it can, so that two brokers never own one name",
            self.config.name,
            self.subjects.bucket(),
            self.stats.state().name()
        )
    }

    /// A new exported name here: claim it in the name store, then answer the router.
    fn claim(&mut self, frame: &Frame) {
        let token = frame.id();
        let name = frame.string(0).to_owned();
        let shared = frame.flags() & flags::SHARED != 0;
        let Some(store) = self.store.clone().filter(|_| self.stats.up()) else {
            ClusterStats::bump(&self.stats.names_refused);
            let msg = self.store_unreachable();
            return self
                .router
                .claim_answered(token, Err((ErrorCode::Unavailable, msg)));
        };
        let node = self.config.node.clone();
        let (client, subject) = (self.client.clone(), self.subjects.calls_to(&name));
        self.kv_tasks.spawn(async move {
            let result = match store::claim(&store, &name, &node, shared).await {
                Ok(revision) => match serve(&client, subject, shared).await {
                    Ok(subscriber) => Ok((revision, Box::new(subscriber))),
                    Err(e) => {
                        store::release(&store, &name, &node, shared, revision).await;
                        Err(Refusal::Unreachable(e))
                    }
                },
                Err(refusal) => Err(refusal),
            };
            KvDone::Claimed {
                token,
                name,
                shared,
                result,
            }
        });
    }

    /// A name left this broker: stop serving it to the cluster and give up its claim.
    fn release(&mut self, name: &str) {
        let Some(held) = self.held.remove(name) else {
            return;
        };
        held.listener.abort();
        if let Some(store) = self.store.clone() {
            let (name, node) = (name.to_owned(), self.config.node.clone());
            tokio::spawn(async move {
                store::release(&store, &name, &node, held.shared, held.revision).await;
            });
        }
    }

    fn kv_done(&mut self, done: KvDone) {
        match done {
            KvDone::Opened(result) => {
                self.opening = false;
                match *result {
                    Ok(store) => {
                        info!(
                            bucket = self.subjects.bucket(),
                            "the cluster's name store is open"
                        );
                        self.store = Some(store);
                        self.stats.set_kv_ready(true);
                    }
                    Err(e) => warn!(error = %e, "the cluster's name store is not open yet"),
                }
            }
            KvDone::Claimed {
                token,
                name,
                shared,
                result,
            } => self.claimed(token, name, shared, result),
            KvDone::Renewed { name, result } => match result {
                Ok(revision) => {
                    if let Some(held) = self.held.get_mut(&name) {
                        held.revision = revision;
                    }
                }
                Err(Refusal::Taken(by)) => {
                    warn!(
                        name,
                        holder = by,
                        "lost the cluster-wide claim on a name; it is served to local callers only"
                    );
                    ClusterStats::bump(&self.stats.names_lost);
                    if let Some(held) = self.held.remove(&name) {
                        held.listener.abort();
                    }
                }
                Err(Refusal::Unreachable(_)) => {}
            },
            KvDone::Listed(answer) => self.answer(answer),
        }
    }

    fn claimed(&mut self, token: u64, name: String, shared: bool, result: Claimed) {
        let answer = match result {
            Ok((revision, subscriber)) => {
                let inbox = self.calls_inbox.clone();
                let listener = self.listen(*subscriber, inbox, Inbound::Call);
                if let Some(old) = self.held.insert(
                    name.clone(),
                    Held {
                        shared,
                        revision,
                        listener,
                    },
                ) {
                    old.listener.abort();
                }
                ClusterStats::bump(&self.stats.names_claimed);
                Ok(())
            }
            Err(Refusal::Taken(by)) => {
                ClusterStats::bump(&self.stats.names_refused);
                Err((
                    ErrorCode::NameTaken,
                    format!(
                        "name '{name}' is already owned in cluster '{}' by {by}",
                        self.config.name
                    ),
                ))
            }
            Err(Refusal::Unreachable(why)) => {
                ClusterStats::bump(&self.stats.names_refused);
                Err((
                    ErrorCode::Unavailable,
                    format!("{} ({why})", self.store_unreachable()),
                ))
            }
        };
        self.router.claim_answered(token, answer);
    }

    /// NATS told the link something about the connection.
    fn nats_event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                info!("connected to the cluster's NATS");
                // Re-announce: renew every claim now (it may have run out meanwhile).
                self.renewed = Instant::now() - self.config.lease;
            }
            Event::Disconnected => {
                warn!("lost the cluster's NATS; reconnecting");
                self.fail_calls_out();
            }
            Event::SlowConsumer(_) => {
                warn!("NATS dropped messages to this broker (slow consumer)");
            }
            _ => {}
        }
    }

    /// Every half second: open the name store if it is not, and renew claims every third of
    /// the lease.
    fn tick(&mut self) {
        if !self.stats.up() {
            return;
        }
        if self.store.is_none() && !self.opening {
            self.opening = true;
            let (client, subjects) = (self.client.clone(), self.subjects.clone());
            let (lease, replicas) = (self.config.lease, self.config.kv_replicas);
            self.kv_tasks.spawn(async move {
                KvDone::Opened(Box::new(
                    store::open(client, &subjects, lease, replicas).await,
                ))
            });
        }
        let Some(store) = self.store.clone() else {
            return;
        };
        if self.renewed.elapsed() < self.config.lease / 3 {
            return;
        }
        self.renewed = Instant::now();
        for (name, held) in &self.held {
            let (store, name, node) = (store.clone(), name.clone(), self.config.node.clone());
            let (shared, revision) = (held.shared, held.revision);
            self.kv_tasks.spawn(async move {
                let result = store::renew(&store, &name, &node, shared, revision).await;
                KvDone::Renewed { name, result }
            });
        }
    }

    /// At shutdown: give up every claim (briefly; the lease ends them anyway).
    async fn leave(&mut self) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let node = self.config.node.clone();
        let releases = self.held.drain().map(|(name, held)| {
            let (store, node) = (store.clone(), node.clone());
            async move { store::release(&store, &name, &node, held.shared, held.revision).await }
        });
        let all = futures_util::future::join_all(releases);
        let _ = tokio::time::timeout(Duration::from_secs(1), all).await;
    }
}

/// Subscribes to the calls to a name held here (for a queue group, in a NATS queue group, so
/// that one broker of the group gets each call), and waits until the server has the
/// subscription, so that a call made once the name is registered finds it.
async fn serve(client: &Client, subject: String, shared: bool) -> Result<Subscriber, String> {
    let subscriber = if shared {
        client.queue_subscribe(subject, "plexus".to_owned()).await
    } else {
        client.subscribe(subject).await
    };
    let subscriber = subscriber.map_err(|e| e.to_string())?;
    client.flush().await.map_err(|e| e.to_string())?;
    Ok(subscriber)
}

/// The headers of an answer frame sent back over NATS (its body is the message's payload).
fn answer_headers(frame: &Frame) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let kind = if frame.kind() == Kind::Error {
        "error"
    } else {
        "reply"
    };
    headers.insert(ANSWER, kind);
    headers.insert(AUX, frame.aux().to_string().as_str());
    headers.insert(STRINGS, frame.header().nstr.to_string().as_str());
    headers
}

/// Answers a call from another broker `overloaded` without routing it: the link's inbound queue
/// is full.
async fn refuse_call(client: &Client, message: Message) {
    let Some(reply) = message.reply else {
        return;
    };
    let msg = format!(
        "the broker serving this name receives calls from other brokers faster than it routes them (its queue of them is full: {INBOUND_QUEUE} calls or outbox_limit bytes); try again later"
    );
    let frame = Frame::error(0, ErrorCode::Overloaded, &msg, b"");
    let publish = client.publish_with_headers(reply, answer_headers(&frame), frame.body().clone());
    let _ = tokio::time::timeout(PUBLISH_WAIT, publish).await;
}

/// The `unavailable` answer to call `routed` to `object`.
fn unavailable(routed: u64, object: &str, cluster: &str) -> Frame {
    let msg = format!(
        "'{object}' is not registered on this broker, and the cluster '{cluster}' cannot be reached (NATS is down); try again later"
    );
    let data = json!({ "object": object }).to_string();
    Frame::error(routed, ErrorCode::Unavailable, &msg, data.as_bytes())
}

/// The answer frame another broker sent back for call `routed`; `internal` when the message is
/// not one.
fn answer_frame(routed: u64, message: &Message) -> Frame {
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    let kind = match header(ANSWER).as_deref() {
        Some("reply") => Some(Kind::Reply),
        Some("error") => Some(Kind::Error),
        _ => None,
    };
    let aux = header(AUX).and_then(|a| a.parse::<u32>().ok());
    let nstr = header(STRINGS).and_then(|n| n.parse::<u8>().ok());
    let frame = match (kind, aux, nstr, u32::try_from(message.payload.len())) {
        (Some(kind), Some(aux), Some(nstr), Ok(body_len)) => {
            let header = Header {
                kind,
                id: routed,
                aux,
                nstr,
                body_len,
                ..Header::new(kind)
            };
            Frame::from_parts(header, message.payload.clone()).ok()
        }
        _ => None,
    };
    frame.unwrap_or_else(|| {
        Frame::error(
            routed,
            ErrorCode::Internal,
            "a broker in the cluster answered with a message that is not a plexus answer",
            b"",
        )
    })
}
