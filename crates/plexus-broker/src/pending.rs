//! Calls and `wait_for` requests waiting for an answer, keyed by routed id, with their deadlines.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use crate::conn_id::ConnId;

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
    pub as_worker: Vec<PendingCall>,
    /// Calls it made (their workers get `cancel`), with routed ids.
    pub as_caller: Vec<(u64, PendingCall)>,
}

/// The caller already has an open request with this id.
#[derive(Debug)]
pub struct DuplicateId;

/// The table of everything waiting for an answer.
#[derive(Debug, Default)]
pub struct Pending {
    calls: HashMap<u64, PendingCall>,
    waiters: HashMap<u64, Waiter>,
    by_caller: HashMap<(ConnId, u64), Ticket>,
    per_caller: HashMap<ConnId, usize>,
    deadlines: BinaryHeap<Reverse<(Instant, Ticket)>>,
    next_id: u64,
}

impl Pending {
    /// Requests `caller` has open.
    pub fn open_for(&self, caller: ConnId) -> usize {
        self.per_caller.get(&caller).copied().unwrap_or(0)
    }

    /// Whether `caller` has an open request with id `caller_id`.
    pub fn is_open(&self, caller: ConnId, caller_id: u64) -> bool {
        self.by_caller.contains_key(&(caller, caller_id))
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
        self.calls.insert(routed_id, call);
        Ok(self.push_deadline(deadline, ticket))
    }

    /// Records a waiter. Returns whether its deadline is now the earliest.
    pub fn insert_waiter(&mut self, waiter: Waiter) -> Result<bool, DuplicateId> {
        let key = self.next_routed_id();
        let ticket = Ticket::Wait(key);
        let deadline = waiter.deadline;
        self.open(waiter.caller, waiter.caller_id, ticket)?;
        self.waiters.insert(key, waiter);
        Ok(self.push_deadline(deadline, ticket))
    }

    fn open(&mut self, caller: ConnId, caller_id: u64, ticket: Ticket) -> Result<(), DuplicateId> {
        if self.by_caller.contains_key(&(caller, caller_id)) {
            return Err(DuplicateId);
        }
        self.by_caller.insert((caller, caller_id), ticket);
        *self.per_caller.entry(caller).or_default() += 1;
        Ok(())
    }

    fn close(&mut self, caller: ConnId, caller_id: u64) {
        self.by_caller.remove(&(caller, caller_id));
        if let Some(n) = self.per_caller.get_mut(&caller) {
            *n -= 1;
            if *n == 0 {
                self.per_caller.remove(&caller);
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
        let call = self.calls.remove(&routed_id)?;
        self.close(call.caller, call.caller_id);
        Some(call)
    }

    /// Takes whatever `caller` has open under `caller_id`.
    pub fn take_by_caller(&mut self, caller: ConnId, caller_id: u64) -> Option<Taken> {
        let ticket = *self.by_caller.get(&(caller, caller_id))?;
        self.take(ticket)
    }

    fn take(&mut self, ticket: Ticket) -> Option<Taken> {
        let taken = match ticket {
            Ticket::Call(id) => Taken::Call(id, self.calls.remove(&id)?),
            Ticket::Wait(id) => Taken::Wait(self.waiters.remove(&id)?),
        };
        let (caller, caller_id) = match &taken {
            Taken::Call(_, c) => (c.caller, c.caller_id),
            Taken::Wait(w) => (w.caller, w.caller_id),
        };
        self.close(caller, caller_id);
        Some(taken)
    }

    /// Takes the waiters whose names all satisfy `present`.
    pub fn take_satisfied(&mut self, present: impl Fn(&str) -> bool) -> Vec<Waiter> {
        let ready: Vec<u64> = self
            .waiters
            .iter()
            .filter(|(_, w)| w.names.iter().all(|n| present(n)))
            .map(|(id, _)| *id)
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

    /// Takes everything that involves `conn`.
    pub fn take_connection(&mut self, conn: ConnId) -> Orphans {
        let mut orphans = Orphans::default();
        let involved: Vec<Ticket> = self
            .calls
            .iter()
            .filter(|(_, c)| c.worker == conn || c.caller == conn)
            .map(|(id, _)| Ticket::Call(*id))
            .chain(
                self.waiters
                    .iter()
                    .filter(|(_, w)| w.caller == conn)
                    .map(|(id, _)| Ticket::Wait(*id)),
            )
            .collect();
        for ticket in involved {
            if let Some(Taken::Call(id, call)) = self.take(ticket) {
                if call.worker == conn {
                    orphans.as_worker.push(call);
                } else {
                    orphans.as_caller.push((id, call));
                }
            }
        }
        orphans
    }

    /// Takes everything.
    pub fn take_all(&mut self) -> Vec<Taken> {
        let tickets: Vec<Ticket> = self.by_caller.values().copied().collect();
        self.deadlines.clear();
        tickets.into_iter().filter_map(|t| self.take(t)).collect()
    }

    /// Calls waiting for answers.
    pub fn calls_len(&self) -> usize {
        self.calls.len()
    }
}

#[cfg(test)]
mod tests;
