//! The router: owns the connection table, the registry, the subscriptions and the pending-call
//! table, and moves frames from one connection's reader to other connections' outboxes. State
//! sits behind one `std::sync::Mutex` held only while a batch of frames is routed, never across
//! an await.

mod broker_object;
mod calls;
mod events;
mod monitor;
mod names;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use plexus_proto::{ErrorCode, Frame, Kind};
use tokio::sync::Notify;

use crate::config::Config;
use crate::conn_id::ConnId;
use crate::outbox::Outbox;
use crate::peer::PeerInfo;
use crate::pending::{Pending, Taken};
use crate::registry::Registry;
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
    /// Scratch space for the subscriptions an event matches, kept to reuse its allocation.
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

    /// Counts a connection refused at the connection limit.
    pub fn count_refused_connection(&self) {
        self.lock().stats.connections_refused += 1;
    }

    /// Counts `n` events that were queued to a connection (and counted delivered) but that its
    /// dialect could not give the peer: they were dropped, not delivered.
    pub fn count_undelivered_events(&self, n: u64) {
        let mut st = self.lock();
        st.stats.events_delivered = st.stats.events_delivered.saturating_sub(n);
        st.stats.events_dropped += n;
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
    fn send_always(&mut self, conn: ConnId, frame: Frame) {
        if let Some(c) = self.conns.get(&conn) {
            c.outbox.push_always(frame);
        }
    }

    /// Answers request `id` of `conn` with an empty reply.
    fn ok(&mut self, conn: ConnId, id: u64) {
        self.send_always(conn, Frame::reply(id, b""));
    }

    /// Answers request `id` of `conn` with an error, counts it, and shows it on the monitor feed.
    fn fail(&mut self, conn: ConnId, id: u64, code: ErrorCode, message: &str, data: &[u8]) {
        self.stats.count_error(code);
        self.feed_monitor(|| monitor::error_record(conn, id, code, message));
        self.send_always(conn, Frame::error(id, code, message, data));
    }
}
