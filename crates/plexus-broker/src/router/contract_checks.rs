//! The router's side of contracts: deciding a registration's contract, answering calls and
//! publishes the readers' screens refused, and checking results after the lock is released.

use std::collections::VecDeque;
use std::sync::Arc;

use plexus_proto::{ErrorCode, Frame, Kind};
use serde_json::value::RawValue;

use super::monitor::{self, CallName};
use super::{Router, State};
use crate::conn_id::ConnId;
use crate::contracts::{self, Checked, MethodChecks, Pinned, Prepared, Refusal, Verdict, View};
use crate::outbox::Outbox;
use crate::pending::PendingCall;

/// A worker's reply held back until it is checked against its method's contract.
#[derive(Debug)]
pub struct ResultToCheck {
    caller: ConnId,
    caller_id: u64,
    routed: u64,
    outbox: Outbox,
    reply: Frame,
    checks: Arc<MethodChecks>,
}

impl Router {
    /// Puts the operator's pinned contracts in force.
    pub fn pin_contracts(&self, pinned: Vec<Pinned>) {
        if !pinned.is_empty() {
            self.lock().contracts.pin(pinned);
        }
    }

    /// A reader's view of the contracts in force.
    pub fn contracts_view(&self) -> View {
        self.contracts.view()
    }

    /// Compiles the contracts in the `register` frames of `batch` on a blocking thread, before
    /// the batch is routed, so that neither the router lock nor the runtime waits for a large
    /// schema to compile; the router takes the result when it routes the frame.
    pub async fn prepare_contracts(&self, conn: ConnId, view: &mut View, batch: &VecDeque<Frame>) {
        let prepared = &self.contracts.prepared;
        for frame in batch {
            if frame.kind() != Kind::Register || frame.payload().is_empty() {
                continue;
            }
            let (id, payload) = (frame.id(), frame.payload());
            if prepared.has(conn, id, &payload) {
                continue;
            }
            let snapshot = view.shared(&self.contracts).clone();
            let name = frame.string(0).to_owned();
            let (depth, bytes) = (
                self.config.max_contract_depth,
                self.config.max_description_bytes,
            );
            let text = payload.clone();
            let compiled = tokio::task::spawn_blocking(move || {
                contracts::compile_offered(&name, &text, &snapshot, depth, bytes)
            })
            .await
            .unwrap_or_else(|e| {
                tracing::error!(conn, error = %e, "compiling a contract failed (a bug)");
                Some(Err(
                    "compiling the contract failed (a bug, logged)".to_owned()
                ))
            });
            if let Some(result) = compiled {
                prepared.store(conn, id, payload, result);
            }
        }
    }

    /// Takes the calls and publishes that break their contracts out of `batch` (outside the
    /// lock) and answers them `invalid_params`; frames without a contract are not parsed.
    pub fn screen(&self, conn: ConnId, view: &mut View, batch: &mut VecDeque<Frame>) {
        let refused = contracts::screen(view.current(&self.contracts), batch);
        if refused.is_empty() {
            return;
        }
        let mut st = self.lock();
        for r in refused {
            if !st.conns.contains_key(&conn) {
                break;
            }
            let frame = &r.frame;
            // Access control comes first: a peer the policy refuses is told so, not how its
            // params or payload break a contract it may not use.
            let denied = match frame.kind() {
                Kind::Call => st
                    .access(conn)
                    .map(|a| a.call(frame.string(0), frame.string(1), false)),
                Kind::Publish => st.access(conn).map(|a| a.publish(frame.string(0))),
                _ => None,
            };
            if let Some(Err(denied)) = denied {
                let call = match frame.kind() {
                    Kind::Call => CallName {
                        call_id: None,
                        object: Some(frame.string(0)),
                        method: Some(frame.string(1)),
                    },
                    _ => CallName::default(),
                };
                st.refuse(conn, frame.id(), call, denied);
                continue;
            }
            let call = match frame.kind() {
                Kind::Call => {
                    st.stats.record_call(Some(ErrorCode::InvalidParams), None);
                    CallName {
                        call_id: None,
                        object: Some(frame.string(0)),
                        method: Some(frame.string(1)),
                    }
                }
                _ => CallName::default(),
            };
            st.fail_by_contract(
                conn,
                frame.id(),
                call,
                ErrorCode::InvalidParams,
                (r.check, &r.message, &r.data),
            );
        }
        st.settle();
    }

    /// Checks the replies held back under the lock; forwards those that match their contracts
    /// and answers the others `invalid_result`.
    pub(super) fn check_results(&self, results: Vec<ResultToCheck>) {
        let mut failed = Vec::new();
        for r in results {
            let Some(schema) = r.checks.result.as_ref() else {
                continue;
            };
            match contracts::check(schema, &r.reply.payload()) {
                Ok(()) => r.outbox.push_always(r.reply),
                Err(violation) => {
                    let refusal = Refusal {
                        check: Checked::Result,
                        object: Some(&r.checks.object),
                        method: Some(&r.checks.method),
                        topic: None,
                        violation: &violation,
                    };
                    let (message, data) = (refusal.message(), refusal.data());
                    failed.push((r, message, data));
                }
            }
        }
        if failed.is_empty() {
            return;
        }
        let mut st = self.lock();
        for (r, message, data) in failed {
            let call = CallName {
                call_id: Some(r.routed),
                object: Some(&r.checks.object),
                method: Some(&r.checks.method),
            };
            st.fail_by_contract(
                r.caller,
                r.caller_id,
                call,
                ErrorCode::InvalidResult,
                (Checked::Result, &message, &data),
            );
        }
        st.settle();
    }
}

impl State {
    /// What registering `name` (by `conn`) with `description` comes to, contract-wise;
    /// `prepared` is what the reader compiled from it.
    pub(super) fn decide_contract(
        &self,
        conn: ConnId,
        name: &str,
        description: Option<&RawValue>,
        prepared: Option<Prepared>,
    ) -> Result<Verdict, String> {
        let alone = self
            .registry
            .get(name)
            .is_none_or(|entry| entry.owners.only(conn));
        self.contracts.decide(name, description, alone, prepared)
    }

    /// What the reader compiled for this `register` frame of `conn`, taken (so that nothing
    /// stays behind whatever the register comes to).
    pub(super) fn take_prepared(&self, conn: ConnId, frame: &Frame) -> Option<Prepared> {
        self.contracts
            .published()
            .prepared
            .take(conn, frame.id(), &frame.payload())
    }

    /// Drops what readers compiled for `conn`, which is gone.
    pub(super) fn forget_prepared(&self, conn: ConnId) {
        self.contracts.published().prepared.forget(conn);
    }

    /// After `name` lost an owner: its contract goes once nobody holds it.
    pub(super) fn drop_contract_if_gone(&mut self, name: &str) {
        if self.registry.get(name).is_none() {
            self.contracts.remove(name);
        }
    }

    /// The call's result check, when its method has a result schema and results are checked.
    pub(super) fn result_check(&self, object: &str, method: &str) -> Option<Arc<MethodChecks>> {
        self.contracts.result_check(object, method)
    }

    /// Holds `answer` (already addressed to the caller) back to be checked once the lock is
    /// released, when it is a reply and the call has a result check; else gives it back.
    pub(super) fn hold_for_check(
        &mut self,
        call: &PendingCall,
        routed: u64,
        answer: Frame,
    ) -> Option<Frame> {
        let Some(checks) = &call.result_check else {
            return Some(answer);
        };
        let outbox = match self.conns.get(&call.caller) {
            Some(c) if answer.kind() == Kind::Reply => c.outbox.clone(),
            _ => return Some(answer),
        };
        self.results_to_check.push(ResultToCheck {
            caller: call.caller,
            caller_id: call.caller_id,
            routed,
            outbox,
            reply: answer,
            checks: checks.clone(),
        });
        None
    }

    /// Answers request `id` of `conn` with the error a contract refused it with, counts it, and
    /// shows it on the monitor feed marked with what was checked.
    fn fail_by_contract(
        &mut self,
        conn: ConnId,
        id: u64,
        call: CallName<'_>,
        code: ErrorCode,
        (checked, message, data): (Checked, &str, &str),
    ) {
        self.stats.count_error(code);
        self.feed_monitor(|st| {
            monitor::refusal_record(st.party(conn), id, call, code, message, checked.name())
        });
        self.send_always(conn, Frame::error(id, code, message, data.as_bytes()));
    }
}
