//! Calls and `wait_for` requests waiting for an answer, keyed by routed id, with their deadlines,
//! and indexed by caller, by worker and (waiters) by name.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use crate::conn_id::ConnId;
use crate::observe::NameStats;
use foldhash::{HashMap as FastMap, HashSet as FastSet};

/// A call routed to a worker, waiting for its answer.
#[derive(Debug, Clone)]
pub struct PendingCall {
    /// The connection that made the call.
    pub caller: ConnId,
    /// The id the caller gave it.
    pub caller_id: u64,
    /// The connection it was routed to.
    pub worker: ConnId,
    /// When the caller gets `timeout`.
    pub deadline: Instant,
    /// The timeout the call had, for messages.
    pub timeout_ms: u64,
    /// When the broker routed it, for latency.
    pub started: Instant,
    /// Dashboard: the called name's counters.
    pub name_stats: Arc<NameStats>,
    /// What was called, kept only while someone watches the monitor feed (its records name the
    /// call an answer or a broker error ends); `None` otherwise, so routing costs nothing more.
    pub label: Option<Box<CallLabel>>,
    /// The method's contract when its result is to be checked before it is forwarded.
    pub result_check: Option<std::sync::Arc<crate::contracts::MethodChecks>>,
}

/// The object and method of a routed call.
#[derive(Debug, Clone)]
pub struct CallLabel {
    /// The called object.
    pub object: Box<str>,
    /// The called method.
    pub method: Box<str>,
}

/// A `plexus.wait_for` call waiting for names to appear.
#[derive(Debug, Clone)]
pub struct Waiter {
    /// The connection that asked.
    pub caller: ConnId,
    /// The id of its call.
    pub caller_id: u64,
    /// The names it waits for.
    pub names: Vec<String>,
    /// When it gets `timeout`.
    pub deadline: Instant,
}

/// Which table an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Ticket {
    Call(u64),
    Wait(u64),
}

/// An entry taken out of the table.
#[derive(Debug)]
pub enum Taken {
    /// A routed call and its routed id.
    Call(u64, PendingCall),
    /// A waiter.
    Wait(Waiter),
}

/// What a connection leaves behind when it closes.
#[derive(Debug, Default)]
pub struct Orphans {
    /// Calls routed to it (their callers get `worker_gone`), with routed ids.
    pub as_worker: Vec<(u64, PendingCall)>,
    /// Calls it made (their workers get `cancel`), with routed ids.
    pub as_caller: Vec<(u64, PendingCall)>,
}

/// The caller already has an open request with this id.
#[derive(Debug)]
pub struct DuplicateId;

/// The table of everything waiting for an answer, indexed so that every lookup, a closing
/// connection and a registered name cost only the entries involved.
#[derive(Debug, Default)]
pub struct Pending {
    // Performance: tables keyed by ids the broker assigns (routed ids, connection ids) hash with
    // foldhash; the caller's own request ids, which a peer chooses, keep the DoS-resistant
    // default hasher.
    calls: FastMap<u64, PendingCall>,
    waiters: FastMap<u64, Waiter>,
    /// Open requests per caller: the caller's id → where the request is.
    by_caller: FastMap<ConnId, HashMap<u64, Ticket>>,
    /// Routed ids of the calls routed to each worker.
    by_worker: FastMap<ConnId, FastSet<u64>>,
    /// Waiters by each name they wait for.
    by_name: HashMap<String, HashSet<u64>>,
    deadlines: BinaryHeap<Reverse<(Instant, Ticket)>>,
    next_id: u64,
}

impl Pending {
    /// Requests `caller` has open.
    pub fn open_for(&self, caller: ConnId) -> usize {
        self.by_caller.get(&caller).map_or(0, HashMap::len)
    }

    /// Whether `caller` has an open request with id `caller_id`.
    pub fn is_open(&self, caller: ConnId, caller_id: u64) -> bool {
        self.by_caller
            .get(&caller)
            .is_some_and(|open| open.contains_key(&caller_id))
    }

    /// The id the next routed call will get.
    pub fn next_routed_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Records a call routed with `routed_id` (from [`Pending::next_routed_id`]). Returns whether
    /// its deadline is now the earliest.
    pub fn insert_call(&mut self, routed_id: u64, call: PendingCall) -> Result<bool, DuplicateId> {
        let ticket = Ticket::Call(routed_id);
        let deadline = call.deadline;
        self.open(call.caller, call.caller_id, ticket)?;
        self.by_worker
            .entry(call.worker)
            .or_default()
            .insert(routed_id);
        self.calls.insert(routed_id, call);
        Ok(self.push_deadline(deadline, ticket))
    }

    /// Records a waiter. Returns whether its deadline is now the earliest.
    pub fn insert_waiter(&mut self, waiter: Waiter) -> Result<bool, DuplicateId> {
        let key = self.next_routed_id();
        let ticket = Ticket::Wait(key);
        let deadline = waiter.deadline;
        self.open(waiter.caller, waiter.caller_id, ticket)?;
        for name in &waiter.names {
            self.by_name.entry(name.clone()).or_default().insert(key);
        }
        self.waiters.insert(key, waiter);
        Ok(self.push_deadline(deadline, ticket))
    }

    fn open(&mut self, caller: ConnId, caller_id: u64, ticket: Ticket) -> Result<(), DuplicateId> {
        let open = self.by_caller.entry(caller).or_default();
        if open.contains_key(&caller_id) {
            return Err(DuplicateId);
        }
        open.insert(caller_id, ticket);
        Ok(())
    }

    fn close(&mut self, caller: ConnId, caller_id: u64) {
        if let Some(open) = self.by_caller.get_mut(&caller) {
            open.remove(&caller_id);
            if open.is_empty() {
                self.by_caller.remove(&caller);
            }
        }
    }

    fn push_deadline(&mut self, deadline: Instant, ticket: Ticket) -> bool {
        let earliest = self
            .deadlines
            .peek()
            .is_none_or(|Reverse((d, _))| deadline < *d);
        self.deadlines.push(Reverse((deadline, ticket)));
        self.compact();
        earliest
    }

    /// Drops heap entries of answered requests once they outnumber the live ones.
    fn compact(&mut self) {
        let live = self.calls.len() + self.waiters.len();
        if self.deadlines.len() > 2 * live + 1024 {
            let calls = self
                .calls
                .iter()
                .map(|(id, c)| Reverse((c.deadline, Ticket::Call(*id))));
            let waits = self
                .waiters
                .iter()
                .map(|(id, w)| Reverse((w.deadline, Ticket::Wait(*id))));
            self.deadlines = calls.chain(waits).collect();
        }
    }

    /// Takes the call routed as `routed_id`, if `worker` is the connection it was routed to.
    pub fn take_answer(&mut self, worker: ConnId, routed_id: u64) -> Option<PendingCall> {
        if self.calls.get(&routed_id)?.worker != worker {
            return None;
        }
        match self.take(Ticket::Call(routed_id))? {
            Taken::Call(_, call) => Some(call),
            Taken::Wait(_) => None,
        }
    }

    /// Takes whatever `caller` has open under `caller_id`.
    pub fn take_by_caller(&mut self, caller: ConnId, caller_id: u64) -> Option<Taken> {
        let ticket = *self.by_caller.get(&caller)?.get(&caller_id)?;
        self.take(ticket)
    }

    fn take(&mut self, ticket: Ticket) -> Option<Taken> {
        let taken = match ticket {
            Ticket::Call(id) => {
                let call = self.calls.remove(&id)?;
                if let Some(routed) = self.by_worker.get_mut(&call.worker) {
                    routed.remove(&id);
                    if routed.is_empty() {
                        self.by_worker.remove(&call.worker);
                    }
                }
                Taken::Call(id, call)
            }
            Ticket::Wait(id) => {
                let waiter = self.waiters.remove(&id)?;
                for name in &waiter.names {
                    if let Some(keys) = self.by_name.get_mut(name) {
                        keys.remove(&id);
                        if keys.is_empty() {
                            self.by_name.remove(name);
                        }
                    }
                }
                Taken::Wait(waiter)
            }
        };
        let (caller, caller_id) = match &taken {
            Taken::Call(_, c) => (c.caller, c.caller_id),
            Taken::Wait(w) => (w.caller, w.caller_id),
        };
        self.close(caller, caller_id);
        Some(taken)
    }

    /// Takes the waiters for `name` whose names all satisfy `present` (`name` was just
    /// registered). Only waiters that wait for `name` are looked at.
    pub fn take_satisfied(&mut self, name: &str, present: impl Fn(&str) -> bool) -> Vec<Waiter> {
        let Some(keys) = self.by_name.get(name) else {
            return Vec::new();
        };
        let ready: Vec<u64> = keys
            .iter()
            .filter(|key| {
                self.waiters
                    .get(key)
                    .is_some_and(|w| w.names.iter().all(|n| present(n)))
            })
            .copied()
            .collect();
        ready
            .into_iter()
            .filter_map(|id| match self.take(Ticket::Wait(id)) {
                Some(Taken::Wait(w)) => Some(w),
                _ => None,
            })
            .collect()
    }

    /// The earliest deadline (possibly of an entry already answered).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((d, _))| *d)
    }

    /// Takes every entry whose deadline is at or before `now`.
    pub fn take_expired(&mut self, now: Instant) -> Vec<Taken> {
        let mut out = Vec::new();
        while let Some(Reverse((deadline, ticket))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let live = match ticket {
                Ticket::Call(id) => self.calls.get(&id).map(|c| c.deadline),
                Ticket::Wait(id) => self.waiters.get(&id).map(|w| w.deadline),
            };
            if live == Some(deadline) {
                out.extend(self.take(ticket));
            }
        }
        out
    }

    /// Takes everything that involves `conn`: its own requests and the calls routed to it. Costs
    /// the number of those entries, not the size of the table.
    pub fn take_connection(&mut self, conn: ConnId) -> Orphans {
        let mut orphans = Orphans::default();
        let mut involved: Vec<Ticket> = self
            .by_caller
            .get(&conn)
            .map(|open| open.values().copied().collect())
            .unwrap_or_default();
        if let Some(routed) = self.by_worker.get(&conn) {
            involved.extend(routed.iter().map(|id| Ticket::Call(*id)));
        }
        for ticket in involved {
            if let Some(Taken::Call(id, call)) = self.take(ticket) {
                if call.worker == conn {
                    orphans.as_worker.push((id, call));
                } else {
                    orphans.as_caller.push((id, call));
                }
            }
        }
        orphans
    }

    /// Takes everything.
    pub fn take_all(&mut self) -> Vec<Taken> {
        let tickets: Vec<Ticket> = self
            .calls
            .keys()
            .map(|id| Ticket::Call(*id))
            .chain(self.waiters.keys().map(|id| Ticket::Wait(*id)))
            .collect();
        self.deadlines.clear();
        tickets.into_iter().filter_map(|t| self.take(t)).collect()
    }

    /// Calls waiting for answers.
    pub fn calls_len(&self) -> usize {
        self.calls.len()
    }

    /// `wait_for` requests waiting for names.
    pub fn waiters_len(&self) -> usize {
        self.waiters.len()
    }

    /// Every request waiting for an answer: calls and waiters.
    pub fn requests_len(&self) -> usize {
        self.calls.len() + self.waiters.len()
    }
}

#[cfg(test)]
mod tests;
