//! The client's protocol state, without I/O: it turns commands from the API, frames from the
//! broker, handlers' answers and the connection's loss and return into frames to write, answers
//! to complete, events to deliver, calls to run and cancels to signal.

mod outbound;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use plexus_proto::{ErrorCode, Frame, Kind};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, error, warn};

pub(crate) use outbound::Outbound;

use crate::Error;
use crate::command::{Answer, Command};
use crate::event::Event;
use crate::event_queue::EventQueue;
use crate::id_map::IdMap;
use crate::lost_names::NameLost;
use crate::publish_queue::PublishQueue;
use crate::topic::RecentTopics;
use crate::worker::{Answered, CancelSwitch, DynObject, IncomingCall, cancel_switch};

/// A subscription: its pattern (to restore it) and where its events go.
struct Sub {
    pattern: String,
    group: Option<String>,
    events: Arc<EventQueue>,
    /// Events of the current read, handed to `events` in one batch when the read is done.
    staged: VecDeque<Event>,
    /// Events lost here since the last one delivered.
    dropped: u32,
    /// The topics of the last events, shared with the next events on them.
    topics: RecentTopics,
}

impl Drop for Sub {
    /// However the subscription ends (unsubscribed, the client gone), its reader hears of it.
    fn drop(&mut self) {
        self.events.close();
    }
}

/// A name this client serves.
struct Served {
    /// The id of the `Serve` request that added it.
    id: u64,
    shared: bool,
    object: Arc<dyn DynObject>,
}

/// Who waits for the answer to an open request.
enum Waiter {
    /// A caller through the API.
    Caller(Answer),
    /// The session itself, registering `name` (added by `Serve` request `serve_id`) again after
    /// a reconnect.
    Reregister { name: String, serve_id: u64 },
    /// The session itself, subscribing to `pattern` again after a reconnect.
    Resubscribe { pattern: String },
}

/// The state of one client across its connections.
pub(crate) struct Session {
    /// Request ids, shared with the API.
    ids: Arc<AtomicU64>,
    connected: bool,
    /// Counts connections lost: incoming call ids are only unique within one connection.
    generation: u64,
    /// Open requests by id.
    pending: IdMap<Waiter>,
    subs: IdMap<Sub>,
    /// Subscriptions with events staged by the current read.
    staged: Vec<u64>,
    served: HashMap<String, Served>,
    /// Incoming calls still running, with the switch that tells their handler the caller gave up.
    in_flight: HashMap<u64, CancelSwitch>,
    /// Incoming calls allowed to run at once.
    max_calls: usize,
    /// One permit per running call, held by its task until the handler is done.
    limiter: Arc<Semaphore>,
    /// Who hears of names lost on a reconnect.
    name_listeners: Vec<mpsc::UnboundedSender<NameLost>>,
    out: Outbound,
    /// Room for publishes, given back as they are written or dropped.
    publishes: Arc<PublishQueue>,
}

impl Session {
    /// A session on an open connection; `ids` numbers the requests it makes itself, and
    /// publishes hold room in `publishes` until written.
    pub(crate) fn new(
        ids: Arc<AtomicU64>,
        max_concurrent_calls: usize,
        publishes: Arc<PublishQueue>,
    ) -> Session {
        let max_calls = max_concurrent_calls.max(1);
        Session {
            ids,
            connected: true,
            generation: 0,
            pending: IdMap::default(),
            subs: IdMap::default(),
            staged: Vec::new(),
            served: HashMap::new(),
            in_flight: HashMap::new(),
            max_calls,
            limiter: Arc::new(Semaphore::new(max_calls)),
            name_listeners: Vec::new(),
            out: Outbound::default(),
            publishes,
        }
    }

    /// Bytes queued for the socket.
    pub(crate) fn queued(&self) -> usize {
        self.out.len()
    }

    /// Whether anything waits to be handed to the socket task: bytes, or a flush to answer.
    pub(crate) fn has_output(&self) -> bool {
        !self.out.is_idle()
    }

    /// Hands what is queued to `into`, if `into` has been written out; flushes with nothing
    /// before them to write are answered at once.
    pub(crate) fn take_output(&mut self, into: &mut Outbound) {
        if into.is_empty() {
            std::mem::swap(into, &mut self.out);
            self.out.use_fds = into.use_fds;
            if into.is_empty() {
                into.advance(0, &self.publishes);
            }
        }
    }

    /// Memfd payloads: whether large payloads go as memfds on this connection.
    pub(crate) fn use_fds(&mut self, on: bool) {
        self.out.use_fds = on;
    }

    /// The room publishes hold until written.
    pub(crate) fn publishes(&self) -> &PublishQueue {
        &self.publishes
    }

    /// Carries out one command from the API.
    pub(crate) fn command(&mut self, command: Command) {
        if !self.connected {
            self.refuse(command);
            return;
        }
        match command {
            Command::Request { frame, answer } => {
                self.out.push(&frame);
                self.pending.insert(frame.id(), Waiter::Caller(answer));
            }
            Command::Publish { frame, reserved } => self.out.push_published(&frame, reserved),
            Command::Flush { written } => self.out.wait_written(written),
            Command::Cancel { id } => {
                if self.pending.remove(&id).is_some() {
                    self.out.push(&Frame::cancel(id));
                }
            }
            Command::Subscribe {
                id,
                pattern,
                group,
                events,
                answer,
            } => {
                self.out
                    .push(&subscribe_frame(id, &pattern, group.as_deref()));
                let sub = Sub {
                    pattern,
                    group,
                    events,
                    staged: VecDeque::new(),
                    dropped: 0,
                    topics: RecentTopics::default(),
                };
                self.subs.insert(id, sub);
                self.pending.insert(id, Waiter::Caller(answer));
            }
            Command::Unsubscribe { id } => {
                if self.subs.remove(&id).is_some() {
                    self.out.push(&Frame::unsubscribe(id));
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
                self.out
                    .push(&register_frame(id, &name, shared, object.as_ref()));
                self.served.insert(name, Served { id, shared, object });
                self.pending.insert(id, Waiter::Caller(answer));
            }
            Command::Unserve {
                id,
                name,
                answer: None,
            } => self.roll_back_serve(id, &name),
            Command::Unserve {
                id,
                name,
                answer: Some(answer),
            } => {
                self.served.remove(&name);
                self.out.push(&Frame::unregister(id, &name));
                self.pending.insert(id, Waiter::Caller(answer));
            }
            Command::ListenLostNames { listener } => self.listen_lost_names(listener),
        }
    }

    /// Handles one frame from the broker; an incoming call comes back to be run. Events are
    /// staged until [`Session::deliver_staged`].
    pub(crate) fn incoming(&mut self, frame: Frame) -> Option<IncomingCall> {
        match frame.kind() {
            Kind::Reply | Kind::Error | Kind::Pong => self.answer(frame),
            Kind::Event => self.deliver(frame),
            Kind::Call => return self.dispatch(frame),
            Kind::Cancel => {
                if let Some(cancel) = self.in_flight.remove(&frame.id()) {
                    cancel.cancel();
                }
            }
            other => debug!(
                kind = other.name(),
                "ignoring unexpected frame from the broker"
            ),
        }
        None
    }

    /// Queues a handler's answer, unless the call was cancelled meanwhile or came in on a
    /// connection since lost (the broker that routed it is gone, and a new one reuses its id).
    pub(crate) fn answered(&mut self, answered: Answered) {
        if answered.generation == self.generation && self.in_flight.remove(&answered.id).is_some() {
            self.out.push(&answered.frame);
        }
    }

    /// Hands the events staged since the last call to their subscriptions, one batch each.
    pub(crate) fn deliver_staged(&mut self) {
        for id in self.staged.drain(..) {
            if let Some(sub) = self.subs.get_mut(&id) {
                sub.events.push_batch(&mut sub.staged, &mut sub.dropped);
            }
        }
    }

    /// Delivers the events already read, fails every open request, cancels running handlers and
    /// drops what was not written.
    pub(crate) fn connection_lost(&mut self, why: &str) {
        self.deliver_staged();
        self.connected = false;
        self.generation += 1;
        for (_, waiter) in self.pending.drain() {
            if let Waiter::Caller(answer) = waiter {
                let _ = answer.send(Err(Error::ConnectionLost(why.to_owned())));
            }
        }
        for (_, cancel) in self.in_flight.drain() {
            cancel.cancel();
        }
        self.out.fail(why, &self.publishes);
    }

    /// Queues the registrations and subscriptions again on a new connection.
    pub(crate) fn connection_restored(&mut self) {
        self.connected = true;
        for (name, served) in &self.served {
            let id = self.ids.fetch_add(1, Ordering::Relaxed);
            let frame = register_frame(id, name, served.shared, served.object.as_ref());
            self.out.push(&frame);
            let (name, serve_id) = (name.clone(), served.id);
            self.pending
                .insert(id, Waiter::Reregister { name, serve_id });
        }
        for (id, sub) in &self.subs {
            self.out
                .push(&subscribe_frame(*id, &sub.pattern, sub.group.as_deref()));
            let pattern = sub.pattern.clone();
            self.pending.insert(*id, Waiter::Resubscribe { pattern });
        }
    }

    /// Answers a command that came while there is no connection.
    fn refuse(&mut self, command: Command) {
        match command {
            Command::Request { answer, .. }
            | Command::Subscribe { answer, .. }
            | Command::Serve { answer, .. } => {
                let _ = answer.send(Err(Error::NotConnected));
            }
            Command::Publish { reserved, .. } => {
                self.publishes.release(reserved as usize);
                self.publishes.lose(Error::NotConnected);
            }
            Command::Flush { written } => {
                let _ = written.send(Err(Error::NotConnected));
            }
            Command::Unsubscribe { id } => {
                self.subs.remove(&id);
            }
            Command::Unserve {
                id,
                name,
                answer: None,
            } => self.roll_back_serve(id, &name),
            Command::Unserve {
                name,
                answer: Some(answer),
                ..
            } => {
                self.served.remove(&name);
                let _ = answer.send(Err(Error::NotConnected));
            }
            Command::ListenLostNames { listener } => self.listen_lost_names(listener),
            Command::Cancel { .. } => {}
        }
    }

    fn listen_lost_names(&mut self, listener: mpsc::UnboundedSender<NameLost>) {
        self.name_listeners.retain(|l| !l.is_closed());
        self.name_listeners.push(listener);
    }

    /// Stops serving `name`, which could not be registered again after a reconnect, and tells
    /// the listeners why.
    fn lose_name(&mut self, name: String, serve_id: u64, answer: &Frame) {
        let (code, message) = (answer.error_code(), answer.string(0));
        error!(%code, message, "registering '{name}' again after a reconnect failed; this client no longer serves it");
        self.roll_back_serve(serve_id, &name);
        let lost = NameLost {
            name,
            code,
            message: message.to_owned(),
        };
        self.name_listeners
            .retain(|listener| listener.send(lost.clone()).is_ok());
    }

    /// Forgets `name` if the failed `Serve` request `id` added it.
    fn roll_back_serve(&mut self, id: u64, name: &str) {
        if self.served.get(name).is_some_and(|s| s.id == id) {
            self.served.remove(name);
        }
    }

    fn answer(&mut self, frame: Frame) {
        match self.pending.remove(&frame.id()) {
            Some(Waiter::Caller(answer)) => {
                let _ = answer.send(Ok(frame));
            }
            Some(Waiter::Reregister { name, serve_id }) if frame.kind() == Kind::Error => {
                self.lose_name(name, serve_id, &frame);
            }
            Some(Waiter::Resubscribe { pattern }) if frame.kind() == Kind::Error => {
                error!(code = %frame.error_code(), message = frame.string(0), "subscribing to '{pattern}' again after a reconnect failed; its subscription gets no more events");
            }
            Some(Waiter::Reregister { .. } | Waiter::Resubscribe { .. }) => {}
            None if frame.kind() == Kind::Error => {
                warn!(code = %frame.error_code(), message = frame.string(0), "error from the broker");
            }
            None => {}
        }
    }

    /// Stages an event for its subscription; `dropped` holds, until it is delivered, the count
    /// the broker sent with it.
    fn deliver(&mut self, frame: Frame) {
        let id = frame.id();
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        if sub.staged.is_empty() {
            self.staged.push(id);
        }
        sub.staged.push_back(Event {
            topic: sub.topics.get(frame.string(0)),
            dropped: frame.aux(),
            payload: frame.into_payload(),
        });
    }

    /// A call to run, or an error answered at once: the name is not served here, or as many
    /// calls as allowed are running already.
    fn dispatch(&mut self, frame: Frame) -> Option<IncomingCall> {
        let id = frame.id();
        let Some(served) = self.served.get(frame.string(0)) else {
            let msg = format!("this connection does not serve '{}'", frame.string(0));
            self.out
                .push(&Frame::error(id, ErrorCode::NoSuchObject, &msg, b""));
            return None;
        };
        let Ok(permit) = self.limiter.clone().try_acquire_owned() else {
            let msg = format!(
                "the worker is already running {} calls, its limit; try again later",
                self.max_calls
            );
            self.out
                .push(&Frame::error(id, ErrorCode::Overloaded, &msg, b""));
            return None;
        };
        let (cancel, cancelled) = cancel_switch();
        self.in_flight.insert(id, cancel);
        Some(IncomingCall {
            id,
            generation: self.generation,
            object: served.object.clone(),
            method: frame.string(1).to_owned(),
            params: crate::Payload::of_frame(&frame),
            memfds: self.out.use_fds,
            timeout: Duration::from_millis(u64::from(frame.aux())),
            cancelled,
            permit,
        })
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

/// The `subscribe` frame for subscription `id`, in queue group `group` if any.
fn subscribe_frame(id: u64, pattern: &str, group: Option<&str>) -> Frame {
    match group {
        Some(group) => Frame::subscribe_queue(id, pattern, group),
        None => Frame::subscribe(id, pattern),
    }
}
