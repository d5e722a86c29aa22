//! Unit tests of the pending table: deadline order, lazy deletion, compaction, connections
//! closing, and waiters.

use std::time::{Duration, Instant};

use super::*;

fn call(caller: ConnId, caller_id: u64, worker: ConnId, deadline: Instant) -> PendingCall {
    PendingCall {
        caller,
        caller_id,
        worker,
        deadline,
        timeout_ms: 1000,
        started: deadline,
        name_stats: Default::default(),
        label: None,
        result_check: None,
    }
}

fn waiter(caller: ConnId, caller_id: u64, names: &[&str], deadline: Instant) -> Waiter {
    Waiter {
        caller,
        caller_id,
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        deadline,
    }
}

/// Inserts a call under a fresh routed id and returns the id.
fn insert(pending: &mut Pending, call: PendingCall) -> u64 {
    let routed = pending.next_routed_id();
    pending
        .insert_call(routed, call)
        .expect("a fresh caller id");
    routed
}

/// What `take_expired` returned, as (caller, caller id) pairs in order.
fn callers(taken: &[Taken]) -> Vec<(ConnId, u64)> {
    taken
        .iter()
        .map(|t| match t {
            Taken::Call(_, c) => (c.caller, c.caller_id),
            Taken::Wait(w) => (w.caller, w.caller_id),
        })
        .collect()
}

#[test]
fn deadlines_expire_in_order_whatever_the_insertion_order() {
    let t = Instant::now();
    let s = Duration::from_secs;
    let mut p = Pending::default();
    let routed = p.next_routed_id();
    assert_eq!(
        p.insert_call(routed, call(1, 1, 9, t + s(30))).ok(),
        Some(true),
        "the first deadline is the earliest"
    );
    let routed = p.next_routed_id();
    assert_eq!(
        p.insert_call(routed, call(1, 2, 9, t + s(10))).ok(),
        Some(true)
    );
    let routed = p.next_routed_id();
    assert_eq!(
        p.insert_call(routed, call(1, 3, 9, t + s(20))).ok(),
        Some(false),
        "a later deadline does not wake the timer"
    );
    assert_eq!(
        p.insert_waiter(waiter(2, 1, &["x"], t + s(15))).ok(),
        Some(false)
    );
    assert_eq!(p.next_deadline(), Some(t + s(10)));

    assert!(p.take_expired(t + s(5)).is_empty(), "nothing due yet");
    let due = p.take_expired(t + s(20));
    assert_eq!(callers(&due), [(1, 2), (2, 1), (1, 3)]);
    assert!(matches!(due[1], Taken::Wait(_)));
    assert_eq!(p.next_deadline(), Some(t + s(30)));
    assert_eq!(p.calls_len(), 1);
    assert_eq!(p.open_for(1), 1);
    assert_eq!(p.open_for(2), 0);
}

#[test]
fn answered_and_cancelled_entries_are_skipped_at_their_deadline() {
    let t = Instant::now();
    let s = Duration::from_secs;
    let mut p = Pending::default();
    let answered = insert(&mut p, call(1, 1, 9, t + s(1)));
    insert(&mut p, call(1, 2, 9, t + s(2)));
    insert(&mut p, call(1, 3, 9, t + s(3)));

    assert!(
        p.take_answer(8, answered).is_none(),
        "only the worker the call went to may answer it"
    );
    let taken = p.take_answer(9, answered).expect("the worker's answer");
    assert_eq!((taken.caller, taken.caller_id), (1, 1));
    assert!(p.take_answer(9, answered).is_none(), "answered once");
    match p.take_by_caller(1, 2) {
        Some(Taken::Call(_, c)) => assert_eq!(c.caller_id, 2),
        other => panic!("the cancelled call, not {other:?}"),
    }
    assert!(p.take_by_caller(1, 2).is_none(), "cancelled once");

    assert_eq!(
        p.next_deadline(),
        Some(t + s(1)),
        "the heap keeps answered entries until their deadline comes up"
    );
    assert!(
        p.take_expired(t + s(2)).is_empty(),
        "answered entries are not answered again"
    );
    assert_eq!(callers(&p.take_expired(t + s(3))), [(1, 3)]);
    assert_eq!(p.next_deadline(), None);
    assert!(!p.is_open(1, 1) && !p.is_open(1, 2) && !p.is_open(1, 3));
}

#[test]
fn a_caller_id_is_open_until_its_request_is_answered() {
    let t = Instant::now() + Duration::from_secs(60);
    let mut p = Pending::default();
    let first = insert(&mut p, call(1, 7, 9, t));
    assert!(p.is_open(1, 7));
    assert!(!p.is_open(2, 7), "ids are per connection");
    let again = p.next_routed_id();
    assert!(p.insert_call(again, call(1, 7, 9, t)).is_err());
    assert!(p.insert_waiter(waiter(1, 7, &["x"], t)).is_err());
    assert_eq!(p.open_for(1), 1);
    p.take_answer(9, first).expect("answered");
    assert!(!p.is_open(1, 7));
    insert(&mut p, call(1, 7, 9, t));
    assert_eq!(p.open_for(1), 1, "the id is free again");
}

#[test]
fn routed_ids_are_never_reused() {
    let mut p = Pending::default();
    let ids: Vec<u64> = (0..5).map(|_| p.next_routed_id()).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    p.insert_waiter(waiter(1, 1, &["x"], Instant::now()))
        .expect("a waiter");
    assert_eq!(
        p.next_routed_id(),
        7,
        "waiters take ids from the same counter"
    );
}

#[test]
fn the_heap_is_compacted_when_answered_entries_pile_up() {
    let t = Instant::now() + Duration::from_secs(60);
    let mut p = Pending::default();
    let live = insert(&mut p, call(1, 0, 9, t));
    for id in 1..=10_000 {
        let routed = insert(&mut p, call(1, id, 9, t));
        p.take_answer(9, routed).expect("answered at once");
        // The threshold is checked on each push, when the answered call was still live.
        assert!(
            p.deadlines.len() <= 2 * (p.calls_len() + 1) + 1024,
            "the heap holds {} entries for {} live calls",
            p.deadlines.len(),
            p.calls_len()
        );
    }
    assert_eq!(p.calls_len(), 1);
    let due = p.take_expired(t);
    assert!(
        matches!(due.as_slice(), [Taken::Call(id, _)] if *id == live),
        "the live call survives compaction"
    );
}

#[test]
fn a_closing_connection_takes_its_calls_as_worker_and_as_caller_and_its_waiters() {
    let t = Instant::now() + Duration::from_secs(60);
    let mut p = Pending::default();
    let to_gone = insert(&mut p, call(1, 1, 2, t));
    let from_gone = insert(&mut p, call(2, 5, 3, t));
    let unrelated = insert(&mut p, call(1, 2, 3, t));
    p.insert_waiter(waiter(2, 6, &["x"], t)).expect("waiter");
    p.insert_waiter(waiter(1, 3, &["x"], t)).expect("waiter");

    let orphans = p.take_connection(2);
    let as_worker: Vec<(ConnId, u64)> = orphans
        .as_worker
        .iter()
        .map(|(_, c)| (c.caller, c.caller_id))
        .collect();
    assert_eq!(as_worker, [(1, 1)], "its callers are to be told it is gone");
    let as_caller: Vec<(u64, ConnId)> = orphans
        .as_caller
        .iter()
        .map(|(routed, c)| (*routed, c.worker))
        .collect();
    assert_eq!(
        as_caller,
        [(from_gone, 3)],
        "its workers are to be cancelled"
    );
    assert_eq!(p.open_for(2), 0, "its waiter went too");
    assert!(p.take_answer(2, to_gone).is_none());
    assert_eq!(
        p.open_for(1),
        2,
        "connection 1 keeps its other call and waiter"
    );
    assert!(p.take_answer(3, unrelated).is_some());
    assert_eq!(callers(&p.take_expired(t)), [(1, 3)]);
}

#[test]
fn waiters_are_taken_when_their_names_are_present() {
    let t = Instant::now() + Duration::from_secs(60);
    let mut p = Pending::default();
    p.insert_waiter(waiter(1, 1, &["a"], t)).expect("waiter");
    p.insert_waiter(waiter(1, 2, &["a", "b"], t))
        .expect("waiter");
    p.insert_waiter(waiter(2, 1, &["c"], t)).expect("waiter");

    let ready = p.take_satisfied("a", |n| n == "a");
    let ids: Vec<(ConnId, u64)> = ready.iter().map(|w| (w.caller, w.caller_id)).collect();
    assert_eq!(ids, [(1, 1)]);
    assert!(p.take_satisfied("a", |n| n == "a").is_empty(), "taken once");
    let all = |n: &str| n == "a" || n == "b" || n == "c";
    assert_eq!(p.take_satisfied("b", all).len(), 1);
    assert_eq!(p.take_satisfied("c", all).len(), 1);
    assert_eq!((p.open_for(1), p.open_for(2)), (0, 0));
    assert!(p.take_expired(t).is_empty(), "taken waiters do not expire");
    assert!(
        p.by_name.is_empty(),
        "the name index empties with the waiters"
    );
}

#[test]
fn a_registered_name_looks_only_at_the_waiters_for_it() {
    let t = Instant::now() + Duration::from_secs(60);
    let mut p = Pending::default();
    for id in 0..1000 {
        p.insert_waiter(waiter(1, id, &["other"], t))
            .expect("waiter");
    }
    p.insert_waiter(waiter(2, 1, &["x"], t)).expect("waiter");
    let looked = std::cell::Cell::new(0);
    let ready = p.take_satisfied("x", |_| {
        looked.set(looked.get() + 1);
        true
    });
    assert_eq!(ready.len(), 1);
    assert_eq!(looked.get(), 1, "only the waiter for 'x' was checked");
    assert_eq!(p.waiters_len(), 1000);
}

#[test]
fn a_closing_connection_looks_only_at_its_own_entries() {
    let t = Instant::now() + Duration::from_secs(60);
    let mut p = Pending::default();
    for id in 0..1000 {
        insert(&mut p, call(1, id, 2, t));
    }
    let own = insert(&mut p, call(3, 1, 4, t));
    let orphans = p.take_connection(3);
    assert_eq!(orphans.as_caller.len(), 1);
    assert_eq!(orphans.as_caller[0].0, own);
    assert!(orphans.as_worker.is_empty());
    assert!(!p.by_worker.contains_key(&4) && !p.by_caller.contains_key(&3));
    let orphans = p.take_connection(2);
    assert_eq!(orphans.as_worker.len(), 1000);
    assert_eq!((p.calls_len(), p.open_for(1)), (0, 0));
    assert!(p.by_caller.is_empty() && p.by_worker.is_empty());
}

#[test]
fn take_all_empties_the_table() {
    let t = Instant::now() + Duration::from_secs(60);
    let mut p = Pending::default();
    insert(&mut p, call(1, 1, 2, t));
    insert(&mut p, call(3, 1, 2, t));
    p.insert_waiter(waiter(1, 2, &["x"], t)).expect("waiter");
    let mut all = callers(&p.take_all());
    all.sort_unstable();
    assert_eq!(all, [(1, 1), (1, 2), (3, 1)]);
    assert_eq!((p.calls_len(), p.open_for(1), p.open_for(3)), (0, 0, 0));
    assert_eq!(p.next_deadline(), None);
}
