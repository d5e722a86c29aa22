//! The one task that owns the socket: it writes what the API sends over the command channel,
//! reads frames and hands answers, events and incoming calls to whoever waits for them, and
//! reconnects (re-registering names and re-subscribing) when the broker goes away.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use plexus_proto::{BusAddr, ErrorCode, Frame, Kind, decode, encode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::{debug, warn};

use crate::subscription::Event;
use crate::worker::{CallContext, DynObject};
use crate::{BrokerInfo, Error, Options};

/// Bytes of queued frames after which the task writes before taking more commands.
const WRITE_BATCH: usize = 256 * 1024;
/// How long the broker has to answer `hello`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A request's answer: the `reply`/`error`/`pong` frame.
pub(crate) type Answer = oneshot::Sender<Result<Frame, Error>>;

/// What the API asks the socket task to do.
pub(crate) enum Command {
    /// Send a request and deliver its answer.
    Request { frame: Frame, answer: Answer },
    /// Send a frame; `written` learns when it was handed to the socket.
    Send {
        frame: Frame,
        written: Option<oneshot::Sender<Result<(), Error>>>,
    },
    /// The caller gave up on request `id`: forget it and cancel it at the broker.
    Cancel { id: u64 },
    /// Subscribe as `id`; events go to `events`.
    Subscribe {
        id: u64,
        pattern: String,
        events: mpsc::Sender<Event>,
        answer: Answer,
    },
    /// End subscription `id`.
    Unsubscribe { id: u64 },
    /// Register `name` and dispatch its calls to `object`.
    Serve {
        id: u64,
        name: String,
        shared: bool,
        object: Arc<dyn DynObject>,
        answer: Answer,
    },
    /// Stop serving `name` and unregister it at the broker (request `id`). Without `answer`, a
    /// rollback of the failed `Serve` with the same id: only its own entry is removed.
    Unserve {
        id: u64,
        name: String,
        answer: Option<Answer>,
    },
    /// A handler's answer to incoming call `id`.
    Answered { id: u64, frame: Frame },
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// An open, handshaken connection.
pub(crate) struct Io {
    reader: Reader,
    writer: Writer,
    buf: BytesMut,
    /// What the broker said in its `welcome`.
    pub welcome: BrokerInfo,
}

/// Connects to `addr` and completes the handshake.
pub(crate) async fn open(addr: &BusAddr, client_name: &str) -> Result<Io, Error> {
    let (reader, mut writer): (Reader, Writer) = match addr {
        BusAddr::Unix(path) => {
            let s = UnixStream::connect(path)
                .await
                .map_err(|source| Error::NoBroker {
                    addr: addr.to_string(),
                    source,
                })?;
            let (r, w) = s.into_split();
            (Box::new(r), Box::new(w))
        }
        BusAddr::Tcp(hostport) => {
            let s = TcpStream::connect(hostport)
                .await
                .map_err(|source| Error::NoBroker {
                    addr: addr.to_string(),
                    source,
                })?;
            s.set_nodelay(true)?;
            let (r, w) = s.into_split();
            (Box::new(r), Box::new(w))
        }
    };
    let handshake_failed = |why: String| Error::Handshake {
        addr: addr.to_string(),
        why,
    };
    writer
        .write_all(&Frame::hello(client_name).to_bytes())
        .await?;
    let mut io = Io {
        reader,
        writer,
        buf: BytesMut::with_capacity(64 * 1024),
        welcome: BrokerInfo::default(),
    };
    let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, io.read_frame())
        .await
        .map_err(|_| handshake_failed("no answer to hello within 10 s".into()))?
        .map_err(|e| handshake_failed(format!("{e} (is a plexus broker listening there?)")))?;
    match first.kind() {
        Kind::Welcome => {
            io.welcome = BrokerInfo {
                conn_id: first.id(),
                max_frame: first.aux(),
                version: first.string(0).to_owned(),
            };
            Ok(io)
        }
        Kind::Error => Err(Error::from_frame(&first)),
        other => Err(handshake_failed(format!(
            "expected welcome, got {}",
            other.name()
        ))),
    }
}

impl Io {
    async fn read_frame(&mut self) -> Result<Frame, Error> {
        loop {
            if let Some(frame) = self.decode()? {
                return Ok(frame);
            }
            if self.reader.read_buf(&mut self.buf).await? == 0 {
                return Err(Error::ConnectionLost(
                    "the broker closed the connection".into(),
                ));
            }
        }
    }

    fn decode(&mut self) -> Result<Option<Frame>, Error> {
        decode(&mut self.buf, u32::MAX)
            .map_err(|e| Error::ConnectionLost(format!("the broker sent a bad frame: {e}")))
    }
}

struct Sub {
    pattern: String,
    events: mpsc::Sender<Event>,
    dropped: u32,
}

struct Served {
    /// The id of the `Serve` request that added it.
    id: u64,
    shared: bool,
    object: Arc<dyn DynObject>,
}

/// Why a connection ended.
enum End {
    /// Every handle to the client is gone.
    ClientGone,
    /// The socket broke.
    Lost(String),
}

/// The socket task's state.
pub(crate) struct SocketTask {
    addr: BusAddr,
    options: Options,
    ids: Arc<AtomicU64>,
    commands: mpsc::UnboundedReceiver<Command>,
    answers_to_self: mpsc::WeakUnboundedSender<Command>,
    pending: HashMap<u64, Answer>,
    subs: HashMap<u64, Sub>,
    served: HashMap<String, Served>,
    in_flight: HashMap<u64, watch::Sender<bool>>,
    limiter: Arc<Semaphore>,
    out: BytesMut,
    written: Vec<oneshot::Sender<Result<(), Error>>>,
}

impl SocketTask {
    pub(crate) fn new(
        addr: BusAddr,
        options: Options,
        ids: Arc<AtomicU64>,
        commands: mpsc::UnboundedReceiver<Command>,
        answers_to_self: mpsc::WeakUnboundedSender<Command>,
    ) -> SocketTask {
        let limiter = Arc::new(Semaphore::new(options.max_concurrent_calls.max(1)));
        SocketTask {
            addr,
            options,
            ids,
            commands,
            answers_to_self,
            pending: HashMap::new(),
            subs: HashMap::new(),
            served: HashMap::new(),
            in_flight: HashMap::new(),
            limiter,
            out: BytesMut::new(),
            written: Vec::new(),
        }
    }

    /// Serves the connection, reconnecting if the options say so, until the client is dropped.
    pub(crate) async fn run(mut self, mut io: Io) {
        loop {
            let why = match self.serve(&mut io).await {
                End::ClientGone => return,
                End::Lost(why) => why,
            };
            warn!(addr = %self.addr, %why, "connection to the broker lost");
            self.fail_open(&why);
            if !self.options.reconnect {
                return;
            }
            match self.reconnect().await {
                Some(new) => io = new,
                None => return,
            }
        }
    }

    async fn serve(&mut self, io: &mut Io) -> End {
        loop {
            if !self.out.is_empty() {
                if let Err(e) = io.writer.write_all(&self.out).await {
                    return End::Lost(e.to_string());
                }
                self.out.clear();
                for w in self.written.drain(..) {
                    let _ = w.send(Ok(()));
                }
            }
            tokio::select! {
                command = self.commands.recv() => {
                    let Some(command) = command else { return End::ClientGone };
                    self.command(command);
                    while self.out.len() < WRITE_BATCH {
                        match self.commands.try_recv() {
                            Ok(command) => self.command(command),
                            Err(_) => break,
                        }
                    }
                }
                read = io.reader.read_buf(&mut io.buf) => {
                    match read {
                        Ok(0) => return End::Lost("the broker closed the connection".into()),
                        Err(e) => return End::Lost(e.to_string()),
                        Ok(_) => loop {
                            match io.decode() {
                                Ok(Some(frame)) => self.incoming(frame),
                                Ok(None) => break,
                                Err(e) => return End::Lost(e.to_string()),
                            }
                        },
                    }
                    if io.buf.capacity() - io.buf.len() < 4096 {
                        io.buf.reserve(64 * 1024);
                    }
                }
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Request { frame, answer } => {
                self.pending.insert(frame.id(), answer);
                encode(&frame, &mut self.out);
            }
            Command::Send { frame, written } => {
                encode(&frame, &mut self.out);
                self.written.extend(written);
            }
            Command::Cancel { id } => {
                if self.pending.remove(&id).is_some() {
                    encode(&Frame::cancel(id), &mut self.out);
                }
            }
            Command::Subscribe {
                id,
                pattern,
                events,
                answer,
            } => {
                encode(&Frame::subscribe(id, &pattern), &mut self.out);
                self.subs.insert(
                    id,
                    Sub {
                        pattern,
                        events,
                        dropped: 0,
                    },
                );
                self.pending.insert(id, answer);
            }
            Command::Unsubscribe { id } => {
                if self.subs.remove(&id).is_some() {
                    encode(&Frame::unsubscribe(id), &mut self.out);
                }
            }
            Command::Serve { answer, name, .. } if self.served.contains_key(&name) => {
                let msg = format!("this client already serves '{name}'; unserve it first");
                let _ = answer.send(Err(Error::remote(ErrorCode::NameTaken, msg)));
            }
            Command::Serve {
                id,
                name,
                shared,
                object,
                answer,
            } => {
                encode(
                    &register_frame(id, &name, shared, object.as_ref()),
                    &mut self.out,
                );
                self.served.insert(name, Served { id, shared, object });
                self.pending.insert(id, answer);
            }
            Command::Unserve {
                id,
                name,
                answer: None,
            } => {
                if self.served.get(&name).is_some_and(|s| s.id == id) {
                    self.served.remove(&name);
                }
            }
            Command::Unserve {
                id,
                name,
                answer: Some(answer),
            } => {
                self.served.remove(&name);
                encode(&Frame::unregister(id, &name), &mut self.out);
                self.pending.insert(id, answer);
            }
            Command::Answered { id, frame } => {
                if self.in_flight.remove(&id).is_some() {
                    encode(&frame, &mut self.out);
                }
            }
        }
    }

    fn incoming(&mut self, frame: Frame) {
        match frame.kind() {
            Kind::Reply | Kind::Error | Kind::Pong => {
                if let Some(answer) = self.pending.remove(&frame.id()) {
                    let _ = answer.send(Ok(frame));
                } else if frame.kind() == Kind::Error {
                    warn!(code = %frame.error_code(), message = frame.string(0), "error from the broker");
                }
            }
            Kind::Event => self.deliver(&frame),
            Kind::Call => self.dispatch(frame),
            Kind::Cancel => {
                if let Some(cancel) = self.in_flight.remove(&frame.id()) {
                    let _ = cancel.send(true);
                }
            }
            other => debug!(
                kind = other.name(),
                "ignoring unexpected frame from the broker"
            ),
        }
    }

    fn deliver(&mut self, frame: &Frame) {
        let Some(sub) = self.subs.get_mut(&frame.id()) else {
            return;
        };
        let dropped = sub.dropped.saturating_add(frame.aux());
        let event = Event {
            topic: frame.string(0).to_owned(),
            payload: frame.payload(),
            dropped,
        };
        match sub.events.try_send(event) {
            Ok(()) => sub.dropped = 0,
            Err(mpsc::error::TrySendError::Full(_)) => sub.dropped = dropped.saturating_add(1),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn dispatch(&mut self, frame: Frame) {
        let id = frame.id();
        let Some(served) = self.served.get(frame.string(0)) else {
            let msg = format!("this connection does not serve '{}'", frame.string(0));
            encode(
                &Frame::error(id, ErrorCode::NoSuchObject, &msg, b""),
                &mut self.out,
            );
            return;
        };
        let (cancel_tx, cancel_rx) = watch::channel(false);
        self.in_flight.insert(id, cancel_tx);
        let object = served.object.clone();
        let limiter = self.limiter.clone();
        let answers = self.answers_to_self.clone();
        let method = frame.string(1).to_owned();
        let timeout = Duration::from_millis(u64::from(frame.aux()));
        let params = frame.payload();
        tokio::spawn(async move {
            let _permit = limiter.acquire_owned().await;
            let ctx = CallContext::new(method.clone(), timeout, cancel_rx);
            let frame = match tokio::spawn(object.call_dyn(method.clone(), params, ctx)).await {
                Ok(Ok(result)) => Frame::reply(id, &result),
                Ok(Err(e)) => {
                    let data = match &e {
                        Error::Remote { data: Some(d), .. } => d.to_string().into_bytes(),
                        _ => Vec::new(),
                    };
                    let message = match &e {
                        Error::Remote { message, .. } => message.clone(),
                        other => other.to_string(),
                    };
                    Frame::error(id, e.code(), &message, &data)
                }
                Err(join) => {
                    let msg = format!(
                        "the handler for '{method}' panicked: {}",
                        panic_message(join)
                    );
                    Frame::error(id, ErrorCode::Internal, &msg, b"")
                }
            };
            if let Some(answers) = answers.upgrade() {
                let _ = answers.send(Command::Answered { id, frame });
            }
        });
    }

    /// Fails every open request and cancels running handlers after the connection broke.
    fn fail_open(&mut self, why: &str) {
        for (_, answer) in self.pending.drain() {
            let _ = answer.send(Err(Error::ConnectionLost(why.to_owned())));
        }
        for (_, cancel) in self.in_flight.drain() {
            let _ = cancel.send(true);
        }
        for w in self.written.drain(..) {
            let _ = w.send(Err(Error::ConnectionLost(why.to_owned())));
        }
        self.out.clear();
    }

    /// Reconnects with backoff, refusing commands meanwhile; restores names and subscriptions.
    async fn reconnect(&mut self) -> Option<Io> {
        let mut delay = Duration::from_millis(50);
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    None => return None,
                    Some(command) => self.refuse(command),
                },
                _ = tokio::time::sleep(delay) => {
                    match open(&self.addr, &self.options.name).await {
                        Ok(io) => {
                            self.restore();
                            debug!(addr = %self.addr, conn = io.welcome.conn_id, "reconnected");
                            return Some(io);
                        }
                        Err(e) => {
                            debug!(error = %e, "reconnect failed");
                            delay = (delay * 2).min(Duration::from_secs(2));
                        }
                    }
                }
            }
        }
    }

    fn refuse(&mut self, command: Command) {
        match command {
            Command::Request { answer, .. }
            | Command::Subscribe { answer, .. }
            | Command::Serve { answer, .. } => {
                let _ = answer.send(Err(Error::NotConnected));
            }
            Command::Send { written, .. } => {
                if let Some(w) = written {
                    let _ = w.send(Err(Error::NotConnected));
                }
            }
            Command::Unsubscribe { id } => {
                self.subs.remove(&id);
            }
            rollback @ Command::Unserve { answer: None, .. } => self.command(rollback),
            Command::Unserve {
                name,
                answer: Some(answer),
                ..
            } => {
                self.served.remove(&name);
                let _ = answer.send(Err(Error::NotConnected));
            }
            Command::Cancel { .. } | Command::Answered { .. } => {}
        }
    }

    /// Queues registrations and subscriptions again on a new connection.
    fn restore(&mut self) {
        let served: Vec<(String, bool, Arc<dyn DynObject>)> = self
            .served
            .iter()
            .map(|(n, s)| (n.clone(), s.shared, s.object.clone()))
            .collect();
        for (name, shared, object) in served {
            let id = self.ids.fetch_add(1, Ordering::Relaxed);
            encode(
                &register_frame(id, &name, shared, object.as_ref()),
                &mut self.out,
            );
            self.pending
                .insert(id, log_failure(format!("re-registering '{name}'")));
        }
        let subs: Vec<(u64, String)> = self
            .subs
            .iter()
            .map(|(id, s)| (*id, s.pattern.clone()))
            .collect();
        for (id, pattern) in subs {
            encode(&Frame::subscribe(id, &pattern), &mut self.out);
            self.pending
                .insert(id, log_failure(format!("re-subscribing to '{pattern}'")));
        }
    }
}

/// A `register` frame carrying what the object declares about itself.
fn register_frame(id: u64, name: &str, shared: bool, object: &dyn DynObject) -> Frame {
    let flags = if shared {
        plexus_proto::flags::SHARED
    } else {
        0
    };
    Frame::build(Kind::Register, id, 0, flags, &[name], &object.describe())
}

/// An answer slot that only logs a failure.
fn log_failure(what: String) -> Answer {
    let (tx, rx) = oneshot::channel::<Result<Frame, Error>>();
    tokio::spawn(async move {
        if let Ok(Ok(frame)) = rx.await
            && frame.kind() == Kind::Error
        {
            warn!(code = %frame.error_code(), message = frame.string(0), "{what} failed");
        }
    });
    tx
}

fn panic_message(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned()),
        Err(join) => join.to_string(),
    }
}

/// The payload of an answer, or its error.
pub(crate) fn into_result(frame: Frame) -> Result<Bytes, Error> {
    match frame.kind() {
        Kind::Error => Err(Error::from_frame(&frame)),
        _ => Ok(frame.payload()),
    }
}
