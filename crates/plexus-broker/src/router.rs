//! The router: owns the registry, the subscriptions and the pending-call table, and moves frames
//! from one connection's reader to other connections' outboxes. State sits behind one
//! `std::sync::Mutex` held only while a batch of frames is routed, never across an await.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use plexus_proto::{
    BROKER_OBJECT, ErrorCode, Frame, Kind, flags, validate_name, validate_pattern, validate_topic,
};
use serde_json::json;
use tokio::sync::Notify;

use crate::broker_object;
use crate::config::Config;
use crate::conn_id::ConnId;
use crate::monitor;
use crate::outbox::Outbox;
use crate::peer::PeerInfo;
use crate::pending::{Pending, PendingCall, Taken, Waiter};
use crate::registry::{Registry, RegistryRefusal};
use crate::stats::Stats;
use crate::subscriptions::{SubKey, Subscriptions};

/// One subscription of a connection.
#[derive(Debug)]
pub struct Subscription {
    /// Its pattern.
    pub pattern: String,
    /// Events dropped since the last one delivered.
    pub dropped: u32,
    /// Whether it receives the monitor feed.
    pub monitor: bool,
}

/// A connection that finished its handshake.
#[derive(Debug)]
pub struct Conn {
    /// Its outbox.
    pub outbox: Outbox,
    /// Who it is.
    pub peer: PeerInfo,
    /// Names it holds.
    pub names: Vec<String>,
    /// Its subscriptions by id.
    pub subs: HashMap<u64, Subscription>,
}

/// Everything the router owns.
#[derive(Debug, Default)]
pub struct State {
    /// Connections by id.
    pub conns: HashMap<ConnId, Conn>,
    /// Names.
    pub registry: Registry,
    /// Subscriptions.
    pub subs: Subscriptions,
    /// Open calls and waiters.
    pub pending: Pending,
    /// Counters.
    pub stats: Stats,
    /// Set once shutdown began: new calls are refused.
    pub shutting_down: bool,
    /// Set when a deadline earlier than the timer's was added.
    pub timer_dirty: bool,
    /// Subscriptions that receive the monitor feed; while 0, no feed is built.
    pub monitor_subs: usize,
    matches: Vec<SubKey>,
}

/// The router, shared by every connection task.
#[derive(Debug)]
pub struct Router {
    state: Mutex<State>,
    next_conn: AtomicU64,
    timer: Notify,
    config: Config,
}

impl Router {
    /// A router with no connections.
    pub fn new(config: Config) -> Router {
        Router {
            state: Mutex::default(),
            next_conn: AtomicU64::new(1),
            timer: Notify::new(),
            config,
        }
    }

    /// The broker's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the state under the lock.
    #[cfg(feature = "metrics")]
    pub fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.lock())
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a connection that sent `hello` and answers it with `welcome`.
    pub fn attach(&self, conn: ConnId, peer: PeerInfo, outbox: Outbox) {
        outbox.push_always(Frame::welcome(
            conn,
            self.config.max_frame,
            env!("CARGO_PKG_VERSION"),
        ));
        let mut st = self.lock();
        st.stats.connections_total += 1;
        st.conns.insert(
            conn,
            Conn {
                outbox,
                peer,
                names: Vec::new(),
                subs: HashMap::new(),
            },
        );
    }

    /// Routes a batch of frames from `conn`, under one lock.
    pub fn handle(&self, conn: ConnId, frames: impl IntoIterator<Item = Frame>) {
        let now = Instant::now();
        let mut st = self.lock();
        for frame in frames {
            st.handle(conn, frame, now, &self.config);
        }
        if std::mem::take(&mut st.timer_dirty) {
            self.timer.notify_one();
        }
    }

    /// Removes a connection: its names and subscriptions go, calls pending on it are answered
    /// `worker_gone`, and calls it made are cancelled towards their workers.
    pub fn detach(&self, conn: ConnId) {
        let mut st = self.lock();
        let Some(gone) = st.conns.remove(&conn) else {
            return;
        };
        for name in &gone.names {
            let _ = st.registry.unregister(name, conn);
        }
        for (id, sub) in &gone.subs {
            st.subs.remove(&sub.pattern, (conn, *id));
            st.monitor_subs -= usize::from(sub.monitor);
        }
        let orphans = st.pending.take_connection(conn);
        let who = gone.peer.describe(conn);
        for call in orphans.as_worker {
            st.stats.record_call(Some(ErrorCode::WorkerGone), None);
            let msg = format!("the worker, {who}, disconnected before answering");
            st.fail(
                call.caller,
                call.caller_id,
                ErrorCode::WorkerGone,
                &msg,
                b"",
            );
        }
        for (routed, call) in orphans.as_caller {
            st.send_always(call.worker, Frame::cancel(routed));
        }
    }

    /// Answers everything whose deadline passed; returns the next deadline.
    pub fn expire(&self, now: Instant) -> Option<Instant> {
        let mut st = self.lock();
        for taken in st.pending.take_expired(now) {
            st.answer_expired(taken);
        }
        st.timer_dirty = false;
        st.pending.next_deadline()
    }

    /// Waits until a deadline earlier than the last one returned by [`Router::expire`] is added.
    pub async fn deadline_added(&self) {
        self.timer.notified().await;
    }

    /// Refuses new calls and answers every pending call and waiter with `shutting_down`.
    pub fn begin_shutdown(&self) {
        let mut st = self.lock();
        st.shutting_down = true;
        for taken in st.pending.take_all() {
            let (caller, caller_id) = match &taken {
                Taken::Call(_, c) => {
                    st.stats.record_call(Some(ErrorCode::ShuttingDown), None);
                    (c.caller, c.caller_id)
                }
                Taken::Wait(w) => (w.caller, w.caller_id),
            };
            st.fail(
                caller,
                caller_id,
                ErrorCode::ShuttingDown,
                "the broker is shutting down",
                b"",
            );
        }
    }
}

impl State {
    fn handle(&mut self, conn: ConnId, frame: Frame, now: Instant, config: &Config) {
        match frame.kind() {
            Kind::Call => self.call(conn, frame, now, config),
            Kind::Reply | Kind::Error => self.forward_answer(conn, frame),
            Kind::Cancel => self.cancel(conn, frame.id()),
            Kind::Register => self.register(conn, &frame),
            Kind::Unregister => self.unregister(conn, &frame),
            Kind::Subscribe => self.subscribe(conn, &frame),
            Kind::Unsubscribe => self.unsubscribe(conn, frame.id()),
            Kind::Publish => self.publish(conn, &frame),
            Kind::Ping => self.send_always(conn, Frame::pong(frame.id(), &frame.payload())),
            Kind::Hello | Kind::Welcome | Kind::Event | Kind::Pong => {
                let msg = format!(
                    "a {} frame is not valid from a client after the handshake",
                    frame.kind().name()
                );
                self.fail(conn, frame.id(), ErrorCode::BadFrame, &msg, b"");
            }
        }
    }

    /// Queues an answer to `conn`, if it is still connected.
    pub fn send_always(&mut self, conn: ConnId, frame: Frame) {
        if let Some(c) = self.conns.get(&conn) {
            c.outbox.push_always(frame);
        }
    }

    /// Answers request `id` of `conn` with an empty reply.
    pub fn ok(&mut self, conn: ConnId, id: u64) {
        self.send_always(conn, Frame::reply(id, b""));
    }

    /// Answers request `id` of `conn` with an error, and counts it.
    pub fn fail(&mut self, conn: ConnId, id: u64, code: ErrorCode, message: &str, data: &[u8]) {
        self.stats.count_error(code);
        if self.monitor_subs > 0 {
            self.deliver(&monitor::broker_error(conn, id, code, message));
        }
        self.send_always(conn, Frame::error(id, code, message, data));
    }

    fn call(&mut self, conn: ConnId, frame: Frame, now: Instant, config: &Config) {
        let id = frame.id();
        if self.shutting_down {
            return self.fail(
                conn,
                id,
                ErrorCode::ShuttingDown,
                "the broker is shutting down",
                b"",
            );
        }
        if self.pending.is_open(conn, id) {
            let msg =
                format!("request id {id} is already in use by an open request on this connection");
            return self.fail(conn, id, ErrorCode::InvalidParams, &msg, b"");
        }
        let timeout = match frame.aux() {
            0 => config.default_call_timeout,
            ms => Duration::from_millis(u64::from(ms)),
        };
        if frame.string(0) == BROKER_OBJECT {
            self.stats.broker_calls += 1;
            return broker_object::call(self, conn, &frame, now + timeout);
        }
        if self.pending.open_for(conn) >= config.max_pending_per_connection {
            let msg = format!(
                "{} requests are already waiting for answers on this connection (the limit); wait for some to finish",
                config.max_pending_per_connection
            );
            self.stats.record_call(Some(ErrorCode::Overloaded), None);
            return self.fail(conn, id, ErrorCode::Overloaded, &msg, b"");
        }
        let object = frame.string(0);
        let Some(worker) = self.registry.route(object) else {
            let msg = format!("no object named '{object}' is registered on the bus");
            let data = json!({ "object": object }).to_string();
            self.stats.record_call(Some(ErrorCode::NoSuchObject), None);
            return self.fail(conn, id, ErrorCode::NoSuchObject, &msg, data.as_bytes());
        };
        let routed = self.pending.next_routed_id();
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let pushed = match self.conns.get(&worker) {
            Some(w) => w
                .outbox
                .push(frame.readdress(Kind::Call, routed, timeout_ms))
                .is_ok(),
            None => false,
        };
        if !pushed {
            let msg = format!(
                "the worker for '{object}' is not keeping up (its outbox is full); try again later"
            );
            self.stats.record_call(Some(ErrorCode::Overloaded), None);
            return self.fail(conn, id, ErrorCode::Overloaded, &msg, b"");
        }
        let call = PendingCall {
            caller: conn,
            caller_id: id,
            worker,
            deadline: now + timeout,
            timeout_ms: timeout_ms.into(),
            started: now,
        };
        if self.monitor_subs > 0 {
            self.deliver(&monitor::call(conn, worker, routed, &frame));
        }
        if let Ok(earliest) = self.pending.insert_call(routed, call) {
            self.timer_dirty |= earliest;
        }
        self.stats.calls_routed += 1;
    }

    fn forward_answer(&mut self, worker: ConnId, frame: Frame) {
        let Some(call) = self.pending.take_answer(worker, frame.id()) else {
            self.stats.late_replies += 1;
            return;
        };
        let elapsed = call.started.elapsed();
        if frame.kind() == Kind::Error {
            self.stats.count_error(frame.error_code());
            self.stats
                .record_call(Some(frame.error_code()), Some(elapsed));
        } else {
            self.stats.record_call(None, Some(elapsed));
        }
        self.stats.replies_routed += 1;
        if self.monitor_subs > 0 {
            let routed = frame.id();
            self.deliver(&monitor::answer(
                worker,
                call.caller,
                routed,
                elapsed,
                &frame,
            ));
        }
        self.send_always(
            call.caller,
            frame.readdress(frame.kind(), call.caller_id, frame.aux()),
        );
    }

    fn cancel(&mut self, caller: ConnId, id: u64) {
        if let Some(Taken::Call(routed, call)) = self.pending.take_by_caller(caller, id) {
            self.send_always(call.worker, Frame::cancel(routed));
        }
    }

    fn answer_expired(&mut self, taken: Taken) {
        match taken {
            Taken::Call(routed, call) => {
                let msg = format!(
                    "no reply within {} ms; the call was cancelled",
                    call.timeout_ms
                );
                self.stats.record_call(Some(ErrorCode::Timeout), None);
                self.fail(call.caller, call.caller_id, ErrorCode::Timeout, &msg, b"");
                self.send_always(call.worker, Frame::cancel(routed));
            }
            Taken::Wait(w) => {
                let missing: Vec<&String> = w
                    .names
                    .iter()
                    .filter(|n| !self.registry.contains(n))
                    .collect();
                let msg = format!("still not registered when the wait ended: {missing:?}");
                let data = json!({ "missing": missing }).to_string();
                self.fail(
                    w.caller,
                    w.caller_id,
                    ErrorCode::Timeout,
                    &msg,
                    data.as_bytes(),
                );
            }
        }
    }

    /// Records a waiter for names, or answers it at once if they are all registered.
    pub fn wait_for(&mut self, waiter: Waiter) {
        if waiter.names.iter().all(|n| self.registry.contains(n)) {
            let data = json!({ "names": waiter.names }).to_string();
            return self.send_always(
                waiter.caller,
                Frame::reply(waiter.caller_id, data.as_bytes()),
            );
        }
        let (caller, id) = (waiter.caller, waiter.caller_id);
        match self.pending.insert_waiter(waiter) {
            Ok(earliest) => self.timer_dirty |= earliest,
            Err(_) => {
                let msg = format!(
                    "request id {id} is already in use by an open request on this connection"
                );
                self.fail(caller, id, ErrorCode::InvalidParams, &msg, b"");
            }
        }
    }

    fn register(&mut self, conn: ConnId, frame: &Frame) {
        let (id, name) = (frame.id(), frame.string(0));
        if let Err(e) = validate_name(name) {
            return self.fail(conn, id, ErrorCode::InvalidParams, &e.to_string(), b"");
        }
        if name == BROKER_OBJECT {
            let msg = format!("the name '{BROKER_OBJECT}' belongs to the broker");
            return self.fail(conn, id, ErrorCode::PermissionDenied, &msg, b"");
        }
        let shared = frame.flags() & flags::SHARED != 0;
        let payload = frame.payload();
        let description = if payload.is_empty() {
            None
        } else {
            match serde_json::from_slice::<serde_json::Value>(&payload) {
                Ok(v @ serde_json::Value::Object(_)) => Some(v),
                _ => {
                    let msg =
                        "a register payload must be a JSON object like {\"methods\":{\"add\":{}}}";
                    return self.fail(conn, id, ErrorCode::InvalidParams, msg, b"");
                }
            }
        };
        match self.registry.register(name, conn, shared) {
            Ok(()) => {
                if let Some(description) = description {
                    self.registry.describe(name, description);
                }
                if let Some(c) = self.conns.get_mut(&conn)
                    && !c.names.iter().any(|n| n == name)
                {
                    c.names.push(name.to_owned());
                }
                self.ok(conn, id);
                let registry = &self.registry;
                for w in self.pending.take_satisfied(|n| registry.contains(n)) {
                    let data = json!({ "names": w.names }).to_string();
                    self.send_always(w.caller, Frame::reply(w.caller_id, data.as_bytes()));
                }
            }
            Err(refusal) => {
                let owner = match refusal {
                    RegistryRefusal::Taken(owner) => owner,
                    RegistryRefusal::NotRegistered | RegistryRefusal::NotOwner => conn,
                };
                let who = self
                    .conns
                    .get(&owner)
                    .map(|c| c.peer.describe(owner))
                    .unwrap_or_default();
                let how = if shared { "exclusively" } else { "already" };
                let msg = format!("name '{name}' is {how} owned by {who}");
                let data = json!({ "name": name, "owner_conn": owner }).to_string();
                self.fail(conn, id, ErrorCode::NameTaken, &msg, data.as_bytes());
            }
        }
    }

    fn unregister(&mut self, conn: ConnId, frame: &Frame) {
        let (id, name) = (frame.id(), frame.string(0));
        if name == BROKER_OBJECT {
            let msg = format!("the name '{BROKER_OBJECT}' belongs to the broker");
            return self.fail(conn, id, ErrorCode::PermissionDenied, &msg, b"");
        }
        match self.registry.unregister(name, conn) {
            Ok(()) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.names.retain(|n| n != name);
                }
                self.ok(conn, id);
            }
            Err(RegistryRefusal::NotRegistered | RegistryRefusal::Taken(_)) => {
                let msg = format!("no object named '{name}' is registered");
                self.fail(conn, id, ErrorCode::NoSuchObject, &msg, b"");
            }
            Err(RegistryRefusal::NotOwner) => {
                let msg =
                    format!("name '{name}' is registered by another connection, not this one");
                self.fail(conn, id, ErrorCode::PermissionDenied, &msg, b"");
            }
        }
    }

    fn subscribe(&mut self, conn: ConnId, frame: &Frame) {
        let (id, pattern) = (frame.id(), frame.string(0));
        if let Err(e) = validate_pattern(pattern) {
            return self.fail(conn, id, ErrorCode::InvalidParams, &e.to_string(), b"");
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.subs.contains_key(&id) {
            let msg = format!("subscription id {id} is already in use on this connection");
            return self.fail(conn, id, ErrorCode::InvalidParams, &msg, b"");
        }
        c.subs.insert(
            id,
            Subscription {
                pattern: pattern.to_owned(),
                dropped: 0,
                monitor: monitor::is_monitor_pattern(pattern),
            },
        );
        self.monitor_subs += usize::from(monitor::is_monitor_pattern(pattern));
        self.subs.insert(pattern, (conn, id));
        self.ok(conn, id);
    }

    fn unsubscribe(&mut self, conn: ConnId, id: u64) {
        let removed = self.conns.get_mut(&conn).and_then(|c| c.subs.remove(&id));
        if let Some(sub) = removed {
            self.subs.remove(&sub.pattern, (conn, id));
            self.monitor_subs -= usize::from(sub.monitor);
        }
    }

    fn publish(&mut self, conn: ConnId, frame: &Frame) {
        let topic = frame.string(0);
        if let Err(e) = validate_topic(topic) {
            return self.fail(
                conn,
                frame.id(),
                ErrorCode::InvalidParams,
                &e.to_string(),
                b"",
            );
        }
        if monitor::is_monitor_topic(topic) {
            let msg = format!(
                "topic '{topic}' is the broker's monitor feed; only the broker publishes there"
            );
            return self.fail(conn, frame.id(), ErrorCode::PermissionDenied, &msg, b"");
        }
        let (delivered, dropped) = self.deliver(frame);
        self.stats.events_published += 1;
        if self.monitor_subs > 0 {
            self.deliver(&monitor::event(conn, frame, delivered, dropped));
        }
        if frame.flags() & flags::ACK != 0 {
            let data = json!({ "delivered": delivered, "dropped": dropped }).to_string();
            self.send_always(conn, Frame::reply(frame.id(), data.as_bytes()));
        }
    }

    /// Queues `frame` (a publish) as an event to every matching subscription; returns how many
    /// got it and how many had full outboxes.
    fn deliver(&mut self, frame: &Frame) -> (u64, u64) {
        let feed = monitor::is_monitor_topic(frame.string(0));
        let mut matches = std::mem::take(&mut self.matches);
        matches.clear();
        self.subs.matches(frame.string(0), &mut matches);
        let (mut delivered, mut dropped) = (0u64, 0u64);
        for (target, sub_id) in matches.iter().copied() {
            let Some(c) = self.conns.get_mut(&target) else {
                continue;
            };
            let Some(sub) = c.subs.get_mut(&sub_id) else {
                continue;
            };
            if feed && !sub.monitor {
                continue;
            }
            match c
                .outbox
                .push(frame.readdress(Kind::Event, sub_id, sub.dropped))
            {
                Ok(()) => {
                    sub.dropped = 0;
                    delivered += 1;
                }
                Err(_) => {
                    sub.dropped = sub.dropped.saturating_add(1);
                    dropped += 1;
                }
            }
        }
        self.matches = matches;
        self.stats.events_delivered += delivered;
        self.stats.events_dropped += dropped;
        (delivered, dropped)
    }
}
