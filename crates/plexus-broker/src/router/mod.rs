//! The router: owns the connection table, the registry, the subscriptions and the pending-call
//! table, and moves frames from one connection's reader to other connections' outboxes. State
//! sits behind one `std::sync::Mutex` held only while a batch of frames is routed, never across
//! an await.

// Access control.
mod access;
mod broker_object;
mod calls;
// Contracts.
mod contract_checks;
// Cluster.
mod cluster;
mod events;
mod fd_payloads;
mod monitor;
mod names;
// Publish stall.
mod publish_stall;
mod raw_json;

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use plexus_proto::{ErrorCode, Frame, Kind, flags};
use tokio::sync::{Notify, oneshot};
use tracing::error;

// Cluster.
use crate::cluster::ClusterPort;
use crate::config::Config;
use crate::conn_id::ConnId;
use crate::contracts::{self, Published};
use crate::observe::ConnTraffic;
use crate::observe::live::LiveFeed;
use crate::observe::topics::Topics;
use crate::outbox::Outbox;
use crate::peer::PeerInfo;
use crate::pending::{Pending, PendingCall, Taken};
use crate::policy::Access;
use crate::queue_groups::QueueGroups;
use crate::quotas::{Book, Owner};
use crate::registry::Registry;
use crate::stats::Stats;
use crate::subscriptions::{SubKey, Subscriptions};
use monitor::{CallName, Party};

/// One subscription of a connection.
#[derive(Debug)]
pub struct Subscription {
    /// Its pattern.
    pub pattern: String,
    /// Events dropped since the last one delivered.
    pub dropped: u32,
    /// Whether it receives the monitor feed.
    pub monitor: bool,
    /// The queue group it is a member of, if any.
    pub queue: Option<u64>,
}

/// A connection that finished its handshake.
#[derive(Debug)]
pub struct Conn {
    /// Its outbox.
    pub outbox: Outbox,
    /// Who it is.
    pub peer: PeerInfo,
    /// Names it holds.
    pub names: HashSet<String>,
    /// Its subscriptions by id.
    pub subs: HashMap<u64, Subscription>,
    /// What it may do (access control).
    pub access: Access,
    /// Whose quotas it counts against (access control).
    pub owner: Owner,
    /// Dashboard: its traffic.
    pub traffic: ConnTraffic,
    /// Tells the connection's task that the router disconnected it; taken when it is.
    kick: Option<oneshot::Sender<Kick>>,
}

/// Why the router disconnected a connection: the error its peer is told before it is closed.
#[derive(Debug)]
pub struct Kick {
    /// The error code.
    pub code: ErrorCode,
    /// What happened, naming the limit.
    pub message: String,
}

/// Everything the router owns.
#[derive(Debug)]
pub struct State {
    /// The broker's settings (the limits).
    config: Arc<Config>,
    /// Connections by id (performance: hashed with foldhash, as the broker assigns the ids).
    pub conns: foldhash::HashMap<ConnId, Conn>,
    /// Names.
    pub registry: Registry,
    /// Subscriptions outside queue groups.
    pub subs: Subscriptions,
    /// Queue groups of subscriptions.
    pub queues: QueueGroups,
    /// Open calls and waiters.
    pub pending: Pending,
    /// Counters.
    pub stats: Stats,
    /// Set once shutdown began: new calls are refused.
    pub shutting_down: bool,
    /// Set when a deadline earlier than the timer's was added.
    pub timer_dirty: bool,
    /// Subscriptions that receive the monitor feed; while 0 (and nobody watches `live`), no
    /// feed is built.
    pub monitor_subs: usize,
    /// Dashboard: events per topic.
    pub topics: Topics,
    /// Dashboard: the monitor feed for the dashboard's viewers.
    pub live: Arc<LiveFeed>,
    /// Scratch space for the subscriptions an event matches, kept to reuse its allocation.
    matches: Vec<SubKey>,
    /// Scratch space for the queue groups an event matches.
    group_matches: Vec<u64>,
    /// Connections to disconnect once the current frame is routed, with the error to tell them.
    to_kick: Vec<(ConnId, oneshot::Sender<Kick>, Kick)>,
    // Publish stall.
    /// Subscribers' outboxes the current frame's events put past their high-water mark, each
    /// once; cleared after every frame unless its publisher's reader takes them to wait for.
    lagging: Vec<Outbox>,
    /// The routing pass `lagging` lists outboxes under: a new one for each batch of a native
    /// publisher, so that a batch lists each outbox once.
    lagging_pass: u64,
    /// Each owner's connections, for per-user quotas (access control).
    pub book: Book,
    // Contracts.
    /// The contracts in force.
    pub contracts: contracts::Table,
    /// Workers' results to check against their contracts once the lock is released.
    results_to_check: Vec<contract_checks::ResultToCheck>,
    // Cluster.
    /// The link to other brokers, when the broker is in a cluster.
    pub cluster: Option<ClusterPort>,
}

/// The router, shared by every connection task.
#[derive(Debug)]
pub struct Router {
    state: Mutex<State>,
    next_conn: AtomicU64,
    timer: Notify,
    config: Arc<Config>,
    /// The contracts' snapshot the readers check against.
    contracts: Arc<Published>,
}

/// A connection attached to the router. Dropping it detaches the connection, also when the
/// connection's task unwinds from a panic, so that no connection outlives its task in the
/// router (holding names, with calls routed to it that nobody answers).
#[derive(Debug)]
#[must_use = "dropping it detaches the connection"]
pub struct Attached<'a> {
    router: &'a Router,
    conn: ConnId,
    kicked: Option<oneshot::Receiver<Kick>>,
}

impl Attached<'_> {
    /// Resolves when the router disconnected the connection (a slow consumer, with
    /// `slow_consumer = "disconnect"`), with the error to tell its peer; never otherwise.
    /// Cancel safe.
    pub async fn kicked(&mut self) -> Kick {
        if let Some(rx) = &mut self.kicked {
            let kick = rx.await;
            self.kicked = None;
            if let Ok(kick) = kick {
                return kick;
            }
        }
        std::future::pending().await
    }
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        self.router.detach(self.conn);
    }
}

impl Router {
    /// A router with no connections.
    pub fn new(config: Config) -> Router {
        let config = Arc::new(config);
        let state = State::new(config.clone());
        let contracts = state.contracts.published().clone();
        Router {
            state: Mutex::new(state),
            next_conn: AtomicU64::new(1),
            timer: Notify::new(),
            config,
            contracts,
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
    #[cfg(feature = "http")]
    pub fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.lock())
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a connection that sent `hello` and answers it with `welcome`, with the rights the
    /// policy gives its peer. The connection stays
    /// attached until the returned guard is dropped. A peer the policy or a quota refuses gets
    /// the error to tell it instead.
    pub fn attach(
        &self,
        conn: ConnId,
        peer: PeerInfo,
        outbox: Outbox,
    ) -> Result<Attached<'_>, Kick> {
        let access = self.admit(&peer)?;
        let owner = Owner::of(&peer);
        let (kick, kicked) = oneshot::channel();
        let mut st = self.lock();
        st.room_for_connection(owner)?;
        if let Some(limit) = self
            .config
            .policy
            .as_ref()
            .and_then(|p| p.quotas.outgoing_bytes)
        {
            outbox.count_against(st.book.byte_quota(owner, limit));
        }
        let welcome = Frame::welcome(conn, self.config.max_frame, env!("CARGO_PKG_VERSION"));
        // Memfd payloads: the welcome tells a peer that asked that the broker agrees.
        let fds = if outbox.sends_fds() {
            plexus_proto::flags::FD_PAYLOAD
        } else {
            0
        };
        outbox.push_always(welcome.with_flags(fds));
        st.stats.connections_total += 1;
        st.book.open(owner, conn);
        st.conns.insert(
            conn,
            Conn {
                outbox,
                peer,
                names: HashSet::new(),
                subs: HashMap::new(),
                access,
                owner,
                traffic: ConnTraffic::new(),
                kick: Some(kick),
            },
        );
        Ok(Attached {
            router: self,
            conn,
            kicked: Some(kicked),
        })
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
        self.handle_with(conn, frames, State::handle);
    }

    /// Routes the error frames a dialect's codec made for calls to `conn` it could not carry
    /// (`frame_too_large`), as answers to those calls from the broker: unlike a worker's own
    /// errors, their code is passed on as it is.
    pub fn bounce(&self, conn: ConnId, frames: impl IntoIterator<Item = Frame>) {
        self.handle_with(conn, frames, |st, conn, frame, _| {
            st.forward_answer(conn, frame, calls::Source::Broker);
        });
    }

    /// Runs `route` on each frame under one lock. A panic while routing a frame (a bug) is caught
    /// there: it is logged, the frame's request is answered `internal`, and the connection and
    /// the frames after it go on. The state stays consistent because routing checks and builds
    /// everything before it changes anything, and each change keeps its indexes in step.
    fn handle_with(
        &self,
        conn: ConnId,
        frames: impl IntoIterator<Item = Frame>,
        mut route: impl FnMut(&mut State, ConnId, Frame, Instant),
    ) {
        let now = Instant::now();
        let (mut frames_in, mut bytes_in) = (0u64, 0u64);
        let mut guard = self.lock();
        let st = &mut *guard;
        for frame in frames {
            let (kind, id, flag_bits) = (frame.kind(), frame.id(), frame.flags());
            frames_in += 1;
            bytes_in += frame.wire_len() as u64;
            if catch_unwind(AssertUnwindSafe(|| route(st, conn, frame, now))).is_err() {
                st.after_panic(conn, kind, id, flag_bits);
            }
            st.settle();
        }
        if let Some(c) = st.conns.get_mut(&conn) {
            c.traffic.frames_in += frames_in;
            c.traffic.bytes_in += bytes_in;
        }
        if std::mem::take(&mut st.timer_dirty) {
            self.timer.notify_one();
        }
        let results = std::mem::take(&mut st.results_to_check);
        drop(guard);
        if !results.is_empty() {
            self.check_results(results);
        }
    }

    /// Removes a connection: its names and subscriptions go, calls pending on it are answered
    /// `worker_gone`, and calls it made are cancelled towards their workers. Run by [`Attached`].
    fn detach(&self, conn: ConnId) {
        let mut st = self.lock();
        // Also when the router detached it already (a slow consumer): its reader may have
        // compiled contracts since.
        st.forget_prepared(conn);
        st.detach(conn);
        st.settle();
    }

    /// Answers everything whose deadline passed; returns the next deadline.
    pub fn expire(&self, now: Instant) -> Option<Instant> {
        let mut st = self.lock();
        for taken in st.pending.take_expired(now) {
            st.answer_expired(taken);
        }
        st.settle();
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
            let (caller, caller_id, call) = match &taken {
                Taken::Call(routed, c) => {
                    st.stats.record_call(Some(ErrorCode::ShuttingDown), None);
                    (c.caller, c.caller_id, c.name(*routed))
                }
                Taken::Wait(w) => (w.caller, w.caller_id, CallName::WAIT_FOR),
            };
            st.fail_call(
                caller,
                caller_id,
                call,
                ErrorCode::ShuttingDown,
                "the broker is shutting down",
                b"",
            );
        }
        st.settle();
    }
}

impl State {
    fn new(config: Arc<Config>) -> State {
        State {
            conns: foldhash::HashMap::default(),
            registry: Registry::default(),
            subs: Subscriptions::default(),
            queues: QueueGroups::default(),
            pending: Pending::default(),
            stats: Stats::default(),
            shutting_down: false,
            timer_dirty: false,
            monitor_subs: 0,
            topics: Topics::default(),
            live: Arc::default(),
            matches: Vec::new(),
            group_matches: Vec::new(),
            to_kick: Vec::new(),
            // Publish stall.
            lagging: Vec::new(),
            lagging_pass: 0,
            book: Book::default(),
            contracts: contracts::Table::new(config.max_contract_depth, config.check_results),
            results_to_check: Vec::new(),
            config,
            // Cluster.
            cluster: None,
        }
    }

    /// Removes a connection and everything it holds or is owed, in time proportional to that.
    fn detach(&mut self, conn: ConnId) {
        let Some(gone) = self.conns.remove(&conn) else {
            return;
        };
        self.book.close(gone.owner, conn);
        self.forget_prepared(conn);
        for name in &gone.names {
            let _ = self.registry.unregister(name, conn);
            self.drop_contract_if_gone(name);
            // Cluster.
            self.cluster_name_gone(name);
        }
        for (id, sub) in &gone.subs {
            self.drop_subscription(conn, *id, sub);
        }
        let orphans = self.pending.take_connection(conn);
        let who = gone.peer.describe(conn);
        for (routed, call) in orphans.as_worker {
            self.stats.record_call(Some(ErrorCode::WorkerGone), None);
            call.name_stats.record_failure();
            let msg = format!("the worker, {who}, disconnected before answering");
            self.fail_call(
                call.caller,
                call.caller_id,
                call.name(routed),
                ErrorCode::WorkerGone,
                &msg,
                b"",
            );
        }
        for (routed, call) in orphans.as_caller {
            self.send_always(call.worker, Frame::cancel(routed));
        }
    }

    /// Disconnects the connections marked while routing (slow consumers): each is detached now
    /// and its task told to close it with the error. One at a time, not recursively: detaching
    /// one can mark another (a full monitor subscriber).
    fn settle(&mut self) {
        // Publish stall: only a native publisher's reader waits for them, and it took them.
        self.lagging.clear();
        while let Some((conn, kick, why)) = self.to_kick.pop() {
            self.stats.slow_consumers_disconnected += 1;
            self.stats.count_error(why.code);
            let _ = kick.send(why);
            self.detach(conn);
        }
    }

    /// After routing a frame panicked: logs it and answers the frame's request, if it is one.
    fn after_panic(&mut self, conn: ConnId, kind: Kind, id: u64, flag_bits: u8) {
        error!(
            conn,
            kind = kind.name(),
            id,
            "routing a frame panicked (a bug); the frame was dropped"
        );
        let is_request = match kind {
            Kind::Register | Kind::Unregister | Kind::Call | Kind::Subscribe | Kind::Ping => true,
            Kind::Publish => flag_bits & flags::ACK != 0,
            _ => false,
        };
        if is_request {
            let msg = format!(
                "the broker failed on this {} frame (a bug, logged); it may not have taken effect",
                kind.name()
            );
            self.fail(conn, id, ErrorCode::Internal, &msg, b"");
        }
    }

    /// Routes one frame from `conn`; frames of a connection already detached (disconnected as a
    /// slow consumer while its task still reads) are dropped.
    fn handle(&mut self, conn: ConnId, frame: Frame, now: Instant) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        match frame.kind() {
            Kind::Call => self.call(conn, frame, now),
            Kind::Reply | Kind::Error => self.forward_answer(conn, frame, calls::Source::Worker),
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
        self.fail_call(conn, id, CallName::default(), code, message, data);
    }

    /// [`State::fail`] for a call: the monitor record names the call it ends or refuses.
    fn fail_call(
        &mut self,
        conn: ConnId,
        id: u64,
        call: CallName<'_>,
        code: ErrorCode,
        message: &str,
        data: &[u8],
    ) {
        self.stats.count_error(code);
        self.feed_monitor(|st| monitor::error_record(st.party(conn), id, call, code, message));
        self.send_always(conn, Frame::error(id, code, message, data));
    }

    /// Whether anyone watches the monitor feed: a subscriber or a dashboard viewer.
    fn watched(&self) -> bool {
        self.monitor_subs > 0 || self.live.watched()
    }

    /// A connection as monitor records name it.
    fn party(&self, conn: ConnId) -> Party<'_> {
        let peer = self.conns.get(&conn).map(|c| &c.peer);
        Party {
            conn,
            client: peer.map_or("", |p| p.client.as_str()),
            pid: peer.and_then(|p| p.pid),
        }
    }
}

impl PendingCall {
    /// The call as monitor records name it, `routed` being its routed id.
    fn name(&self, routed: u64) -> CallName<'_> {
        CallName {
            call_id: Some(routed),
            object: self.label.as_ref().map(|l| &*l.object),
            method: self.label.as_ref().map(|l| &*l.method),
        }
    }
}

#[cfg(test)]
mod tests;
