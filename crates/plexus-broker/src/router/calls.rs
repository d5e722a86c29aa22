//! Calls: routing a call to its worker (or to the broker object), forwarding the worker's answer,
//! cancels, answers at deadlines, and `wait_for` waiters.

use std::time::{Duration, Instant};

use plexus_proto::{BROKER_OBJECT, ErrorCode, Frame, Kind};
use serde_json::json;

use super::State;
use super::broker_object::{self, BrokerAnswer};
use super::monitor::{self, CallName};
use crate::conn_id::ConnId;
use crate::pending::{CallLabel, PendingCall, Taken, Waiter};
use crate::quotas::Resource;

/// Who made an answer the router forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The worker the call was routed to: an error code only the broker may send is rewritten.
    Worker,
    /// The broker, on the worker's connection (a call its dialect could not carry).
    Broker,
}

/// Error codes that only the broker sends, so that a caller can believe them: a worker that
/// answers with one has its error forwarded as `internal`.
const BROKER_ONLY: [ErrorCode; 8] = [
    ErrorCode::Timeout,
    ErrorCode::WorkerGone,
    ErrorCode::NameTaken,
    ErrorCode::FrameTooLarge,
    ErrorCode::BadFrame,
    ErrorCode::UnsupportedVersion,
    ErrorCode::ShuttingDown,
    ErrorCode::InvalidResult,
];

impl State {
    /// Routes a call from `conn` to the owner of its object, or answers it when it cannot be.
    pub(super) fn call(&mut self, conn: ConnId, frame: Frame, now: Instant) {
        let id = frame.id();
        let name = CallName {
            call_id: None,
            object: Some(frame.string(0)),
            method: Some(frame.string(1)),
        };
        if self.shutting_down {
            return self.fail_call(
                conn,
                id,
                name,
                ErrorCode::ShuttingDown,
                "the broker is shutting down",
                b"",
            );
        }
        if self.pending.is_open(conn, id) {
            let msg = format!(
                "request id {id} is already in use by an open request on this connection; this call was not routed, and the open request goes on"
            );
            return self.fail_call(conn, id, name, ErrorCode::InvalidParams, &msg, b"");
        }
        // Access control.
        let (object, method) = (frame.string(0), frame.string(1));
        let to_broker = object == BROKER_OBJECT;
        if let Some(Err(denied)) = self
            .access(conn)
            .filter(|_| !(to_broker && method == broker_object::WHOAMI))
            .map(|a| a.call(object, method, to_broker))
        {
            return self.refuse(conn, id, name, denied);
        }
        let timeout = self.call_timeout(frame.aux());
        if frame.string(0) == BROKER_OBJECT {
            self.stats.broker_calls += 1;
            return self.call_broker_object(conn, &frame, now, now + timeout);
        }
        if let Err(msg) = self.room_for_request(conn) {
            self.stats.record_call(Some(ErrorCode::Overloaded), None);
            return self.fail_call(conn, id, name, ErrorCode::Overloaded, &msg, b"");
        }
        let object = frame.string(0);
        if let Some((msg, data)) = self.undeclared_method(object, frame.string(1)) {
            self.stats.record_call(Some(ErrorCode::NoSuchMethod), None);
            return self.fail_call(
                conn,
                id,
                name,
                ErrorCode::NoSuchMethod,
                &msg,
                data.as_bytes(),
            );
        }
        let routed = self.pending.next_routed_id();
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let conns = &self.conns;
        let offer = |worker| {
            conns.get(&worker).is_some_and(|w| {
                w.outbox
                    .push(frame.readdress(Kind::Call, routed, timeout_ms))
                    .is_ok()
            })
        };
        let worker = match self.registry.route(object, offer) {
            Some(Ok(worker)) => worker,
            None => {
                let msg = format!("no object named '{object}' is registered on the bus");
                let data = json!({ "object": object }).to_string();
                self.stats.record_call(Some(ErrorCode::NoSuchObject), None);
                return self.fail_call(
                    conn,
                    id,
                    name,
                    ErrorCode::NoSuchObject,
                    &msg,
                    data.as_bytes(),
                );
            }
            Some(Err(owners)) => {
                let whose = if owners == 1 {
                    "its outbox is full".to_owned()
                } else {
                    format!("the outboxes of all {owners} members of its group are full")
                };
                let msg = format!(
                    "the worker for '{object}' is not keeping up: {whose} (outbox_limit = {} bytes); try again later",
                    self.config.outbox_limit
                );
                self.stats.record_call(Some(ErrorCode::Overloaded), None);
                return self.fail_call(conn, id, name, ErrorCode::Overloaded, &msg, b"");
            }
        };
        let call = PendingCall {
            caller: conn,
            caller_id: id,
            worker,
            deadline: now + timeout,
            timeout_ms: timeout_ms.into(),
            started: now,
            name_stats: self.registry.name_stats(object),
            label: self.watched().then(|| {
                Box::new(CallLabel {
                    object: object.into(),
                    method: frame.string(1).into(),
                })
            }),
            result_check: self.result_check(object, frame.string(1)),
        };
        if let Ok(earliest) = self.pending.insert_call(routed, call) {
            self.timer_dirty |= earliest;
        }
        self.stats.calls_routed += 1;
        self.feed_monitor(|st| {
            monitor::call_record(st.party(conn), st.party(worker), routed, &frame)
        });
    }

    /// When `object` declared its methods and `method` is not one of them: the `no_such_method`
    /// message and data (listing the declared methods) to answer with. An object that declared
    /// none gets every call.
    fn undeclared_method(&self, object: &str, method: &str) -> Option<(String, String)> {
        let declared = self.registry.declared_methods(object)?;
        if declared
            .binary_search_by(|m| m.as_str().cmp(method))
            .is_ok()
        {
            return None;
        }
        let msg = format!(
            "object '{object}' has no method '{method}'; it declared {}",
            declared.join(", ")
        );
        let data = json!({ "object": object, "method": method, "methods": declared }).to_string();
        Some((msg, data))
    }

    /// A call's timeout: the broker's default for 0, and at most `max_call_timeout`.
    fn call_timeout(&self, aux: u32) -> Duration {
        match aux {
            0 => self.config.default_call_timeout,
            ms => Duration::from_millis(u64::from(ms)).min(self.config.max_call_timeout),
        }
    }

    /// Whether `conn` may open one more request (a call or a wait): `Err` with the message
    /// naming the limit it hits.
    fn room_for_request(&mut self, conn: ConnId) -> Result<(), String> {
        let open = self.pending.open_for(conn);
        let per_conn = self.config.max_pending_per_connection;
        if open >= per_conn {
            return Err(format!(
                "{open} requests are already waiting for answers on this connection, the limit (max_pending_per_connection = {per_conn}); wait for some to finish"
            ));
        }
        let all = self.pending.requests_len();
        let total = self.config.max_pending;
        if all >= total {
            return Err(format!(
                "{all} requests are already waiting for answers on the broker, the limit (max_pending = {total}); try again later"
            ));
        }
        // Access control.
        self.room_under_quota(conn, Resource::PendingCalls)
    }

    /// Answers a call to the `plexus` object; `deadline` is the call's own.
    fn call_broker_object(&mut self, conn: ConnId, frame: &Frame, now: Instant, deadline: Instant) {
        let id = frame.id();
        match broker_object::answer(self, conn, frame, now, deadline) {
            BrokerAnswer::Reply(result) => self.send_always(conn, Frame::reply(id, &result)),
            BrokerAnswer::Fail(code, message) => {
                let name = CallName {
                    call_id: None,
                    object: Some(frame.string(0)),
                    method: Some(frame.string(1)),
                };
                self.fail_call(conn, id, name, code, &message, b"");
            }
            BrokerAnswer::Wait(waiter) => self.wait_for(waiter),
        }
    }

    /// Forwards a worker's reply or error to the caller, if the call is still open. An error
    /// from the worker itself with a code only the broker sends reaches the caller as
    /// `internal`, saying which code the worker sent.
    pub(super) fn forward_answer(&mut self, worker: ConnId, frame: Frame, from: Source) {
        let Some(call) = self.pending.take_answer(worker, frame.id()) else {
            self.stats.late_replies += 1;
            return;
        };
        let elapsed = call.started.elapsed();
        let answer = match ErrorCode::from_code(frame.aux()) {
            Some(code)
                if frame.kind() == Kind::Error
                    && from == Source::Worker
                    && BROKER_ONLY.contains(&code) =>
            {
                let msg = format!(
                    "the worker answered with error code {code}, which only the broker sends: {}",
                    frame.string(0)
                );
                Frame::error(call.caller_id, ErrorCode::Internal, &msg, &frame.payload())
            }
            _ => frame.readdress(frame.kind(), call.caller_id, frame.aux()),
        };
        call.name_stats
            .record_answer(answer.kind() == Kind::Error, elapsed);
        if answer.kind() == Kind::Error {
            self.stats.count_error(answer.error_code());
            self.stats
                .record_call(Some(answer.error_code()), Some(elapsed));
        } else {
            self.stats.record_call(None, Some(elapsed));
        }
        self.stats.replies_routed += 1;
        self.feed_monitor(|st| {
            let (from, to) = (st.party(worker), st.party(call.caller));
            monitor::answer_record(from, to, call.name(frame.id()), elapsed, &answer)
        });
        if let Some(answer) = self.hold_for_check(&call, frame.id(), answer) {
            self.send_always(call.caller, answer);
        }
    }

    /// The caller gave up on its request `id`: the worker is told to stop.
    pub(super) fn cancel(&mut self, caller: ConnId, id: u64) {
        if let Some(Taken::Call(routed, call)) = self.pending.take_by_caller(caller, id) {
            self.send_always(call.worker, Frame::cancel(routed));
        }
    }

    /// Answers `timeout` to a call or waiter whose deadline passed; a call is also cancelled.
    pub(super) fn answer_expired(&mut self, taken: Taken) {
        match taken {
            Taken::Call(routed, call) => {
                let msg = format!(
                    "no reply within {} ms; the call was cancelled",
                    call.timeout_ms
                );
                self.stats.record_call(Some(ErrorCode::Timeout), None);
                call.name_stats.record_failure();
                self.fail_call(
                    call.caller,
                    call.caller_id,
                    call.name(routed),
                    ErrorCode::Timeout,
                    &msg,
                    b"",
                );
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
                self.fail_call(
                    w.caller,
                    w.caller_id,
                    CallName::WAIT_FOR,
                    ErrorCode::Timeout,
                    &msg,
                    data.as_bytes(),
                );
            }
        }
    }

    /// Records a waiter for names, or answers it at once if they are all registered. A waiter
    /// counts as an open request of its connection, within the request limits.
    fn wait_for(&mut self, waiter: Waiter) {
        if waiter.names.iter().all(|n| self.registry.contains(n)) {
            return self.answer_waiter(waiter);
        }
        let (caller, id) = (waiter.caller, waiter.caller_id);
        if let Err(msg) = self.room_for_request(caller) {
            return self.fail_call(
                caller,
                id,
                CallName::WAIT_FOR,
                ErrorCode::Overloaded,
                &msg,
                b"",
            );
        }
        match self.pending.insert_waiter(waiter) {
            Ok(earliest) => self.timer_dirty |= earliest,
            Err(_) => {
                let msg = format!(
                    "request id {id} is already in use by an open request on this connection"
                );
                self.fail_call(
                    caller,
                    id,
                    CallName::WAIT_FOR,
                    ErrorCode::InvalidParams,
                    &msg,
                    b"",
                );
            }
        }
    }

    /// Answers the waiters whose names are all registered now that `name` is.
    pub(super) fn answer_waiters_for(&mut self, name: &str) {
        let registry = &self.registry;
        for waiter in self.pending.take_satisfied(name, |n| registry.contains(n)) {
            self.answer_waiter(waiter);
        }
    }

    /// Tells a waiter its names are registered.
    fn answer_waiter(&mut self, waiter: Waiter) {
        let data = json!({ "names": waiter.names }).to_string();
        self.send_always(
            waiter.caller,
            Frame::reply(waiter.caller_id, data.as_bytes()),
        );
    }
}
