//! `plexus monitor [PATTERN]`: every call, answer, error and event the broker routes, with
//! timing, from the broker's `plexus.monitor.*` feed (its records are in `docs/protocol.md`).
//!
//! Answers and the broker's own errors do not say which call they answer; the monitor remembers
//! the calls it saw and ties each answer to its call by the routed call id, and each error the
//! broker answered a call with (timeout, worker_gone, shutting_down) to the caller's open call it
//! fits. Connections are shown as `client[pid]` when `plexus list` knows them (they own a name),
//! else as `conn N`.

use std::collections::{BTreeMap, HashMap, HashSet};

use clap::Args;
use plexus_client::Client;
use plexus_proto::{topic_matches, validate_pattern};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::bus::{Global, ReconnectArgs, stop_signal};
use crate::exit::{Failure, INVALID_ARGS, OK};
use crate::output::compact;

/// `plexus monitor [PATTERN]`.
#[derive(Args, Debug)]
#[command(after_help = MONITOR_HELP)]
pub struct MonitorArgs {
    /// Only traffic whose `object.method` or topic matches (`*` one segment, `>` the rest).
    pattern: Option<String>,
    /// Exit after N records.
    #[arg(short = 'c', long, value_name = "N")]
    count: Option<u64>,
    #[command(flatten)]
    reconnect: ReconnectArgs,
}

const MONITOR_HELP: &str = "\
Each line names its call (OBJECT.METHOD #CALL_ID) or topic. Errors the broker answers a call with
(a timeout, the worker gone) name the call they end. Connections show as client[pid] when they own
a name, else as `conn N`. With --json each line is the broker's record (docs/protocol.md, `The
monitor feed`), with `object`, `method` and `call_id` added to answers and to the broker's errors
when the call they end was seen.";

/// A call seen on the feed and not yet answered.
#[derive(Debug, Clone)]
struct OpenCall {
    subject: String,
    object: String,
    method: String,
    from: u64,
    to: u64,
    deadline_us: u64,
}

/// One record of the feed, its fields as the broker wrote them.
struct Record(BTreeMap<String, Box<RawValue>>);

impl Record {
    fn raw(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.get())
    }

    fn str(&self, key: &str) -> Option<String> {
        self.raw(key)
            .and_then(|r| serde_json::from_str::<String>(r).ok())
    }

    fn u64(&self, key: &str) -> Option<u64> {
        self.raw(key).and_then(|r| r.parse().ok())
    }

    fn set(&mut self, key: &str, value: &Value) {
        if let Ok(raw) = serde_json::value::to_raw_value(value) {
            self.0.insert(key.to_owned(), raw);
        }
    }

    fn shown(&self, key: &str) -> String {
        self.raw(key).map_or_else(|| "null".to_owned(), compact)
    }
}

/// What the monitor knows: open calls by routed id, and connections' labels.
#[derive(Default)]
struct Monitor {
    calls: HashMap<u64, OpenCall>,
    labels: HashMap<u64, String>,
    unlabelled: HashSet<u64>,
}

impl Monitor {
    /// A connection as `client[pid]`, or `conn N` when it owns no name.
    async fn label(&mut self, client: &Client, conn: u64) -> String {
        if !self.labels.contains_key(&conn) && !self.unlabelled.contains(&conn) {
            if let Ok(list) = client.call::<_, Value>("plexus", "list", &()).await {
                for owner in list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|e| e["owners"].as_array().into_iter().flatten())
                {
                    let (Some(id), Some(name)) =
                        (owner["conn_id"].as_u64(), owner["client"].as_str())
                    else {
                        continue;
                    };
                    let label = match owner["pid"].as_u64() {
                        Some(pid) => format!("{name}[{pid}]"),
                        None => format!("{name}#{id}"),
                    };
                    self.labels.insert(id, label);
                }
            }
            if !self.labels.contains_key(&conn) {
                self.unlabelled.insert(conn);
            }
        }
        self.labels
            .get(&conn)
            .cloned()
            .unwrap_or_else(|| format!("conn {conn}"))
    }

    /// The open call a broker error to `caller` ends: a timeout the call whose deadline it is
    /// nearest, worker_gone one routed to the connection its message names, shutting_down the
    /// oldest.
    fn take_ended_call(
        &mut self,
        caller: u64,
        code: &str,
        message: &str,
        ts: u64,
    ) -> Option<(u64, OpenCall)> {
        let mut open: Vec<(&u64, &OpenCall)> = self
            .calls
            .iter()
            .filter(|(_, c)| c.from == caller)
            .collect();
        open.sort_by_key(|(id, _)| **id);
        let id = match code {
            "timeout" => open
                .iter()
                .filter(|(_, c)| c.deadline_us <= ts + 5_000)
                .min_by_key(|(_, c)| ts.abs_diff(c.deadline_us))
                .map(|(id, _)| **id),
            "worker_gone" => {
                let worker = connection_named(message);
                open.iter()
                    .find(|(_, c)| worker.is_none_or(|w| c.to == w))
                    .map(|(id, _)| **id)
            }
            "shutting_down" => open.first().map(|(id, _)| **id),
            _ => None,
        }?;
        self.calls.remove(&id).map(|c| (id, c))
    }

    /// Forgets calls whose deadline passed a minute ago (cancelled calls are never answered).
    fn forget_stale(&mut self, ts: u64) {
        self.calls
            .retain(|_, c| c.deadline_us.saturating_add(60_000_000) > ts);
    }
}

/// The connection id in a message like "the worker, connection 7 (pid 42), disconnected".
fn connection_named(message: &str) -> Option<u64> {
    let rest = message.split("connection ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The object a `no_such_object` message names ("no object named 'x' is registered").
fn object_named(message: &str) -> Option<&str> {
    message.split('\'').nth(1)
}

/// Whether a call to some method of `object` could match `pattern`.
fn object_may_match(pattern: &str, object: &str) -> bool {
    let last = pattern.rsplit('.').next().unwrap_or("x");
    let method = if last == "*" || last == ">" {
        "x"
    } else {
        last
    };
    topic_matches(pattern, &format!("{object}.{method}"))
}

fn clock(ts_us: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        ts_us / 3_600_000_000 % 24,
        ts_us / 60_000_000 % 60,
        ts_us / 1_000_000 % 60,
        ts_us % 1_000_000
    )
}

/// Runs `plexus monitor` until interrupted or `--count` records.
pub async fn monitor(args: MonitorArgs, g: Global) -> Result<u8, Failure> {
    if let Some(pattern) = &args.pattern {
        validate_pattern(pattern).map_err(|e| {
            Failure::new(INVALID_ARGS, format!("{pattern:?} is not a pattern: {e}"))
        })?;
    }
    let (client, mut watch) = g.connect_long("monitor", &args.reconnect).await?;
    let mut feed = client.subscribe("plexus.monitor.*").await?;
    if !g.json {
        eprintln!("monitoring {} (ctrl-c to stop)", client.address());
    }
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut state = Monitor::default();
    let mut printed = 0u64;
    while args.count.is_none_or(|n| printed < n) {
        let event = tokio::select! {
            e = feed.next() => e,
            () = &mut stop => return Ok(OK),
            failure = watch.failure() => return Err(failure),
        };
        let Some(event) = event else {
            return Err(watch.ended().await);
        };
        let Ok(map) = serde_json::from_slice(&event.payload) else {
            continue;
        };
        let mut record = Record(map);
        let Some(line) = describe(&mut state, &client, &mut record, args.pattern.as_deref()).await
        else {
            continue;
        };
        if g.json {
            println!("{}", serde_json::to_string(&record.0).unwrap_or_default());
        } else {
            println!("{line}");
        }
        printed += 1;
    }
    Ok(OK)
}

/// The line for a record, updating what the monitor knows and adding what it found out to the
/// record; `None` when `pattern` filters it out.
async fn describe(
    state: &mut Monitor,
    client: &Client,
    record: &mut Record,
    pattern: Option<&str>,
) -> Option<String> {
    let ts = record.u64("ts_us").unwrap_or(0);
    let time = clock(ts);
    let kind = record.str("kind").unwrap_or_default();
    let matches = |subject: &str| pattern.is_none_or(|p| topic_matches(p, subject));
    match kind.as_str() {
        "call" => {
            let object = record.str("object").unwrap_or_default();
            let method = record.str("method").unwrap_or_default();
            let subject = format!("{object}.{method}");
            let id = record.u64("call_id").unwrap_or(0);
            let (from, to) = (
                record.u64("from").unwrap_or(0),
                record.u64("to").unwrap_or(0),
            );
            let timeout_ms = record.u64("timeout_ms").unwrap_or(0);
            state.forget_stale(ts);
            state.calls.insert(
                id,
                OpenCall {
                    subject: subject.clone(),
                    object,
                    method,
                    from,
                    to,
                    deadline_us: ts + timeout_ms * 1000,
                },
            );
            if !matches(&subject) {
                return None;
            }
            let (caller, worker) = (
                state.label(client, from).await,
                state.label(client, to).await,
            );
            Some(format!(
                "{time} call   {subject} #{id} {} from {caller} to {worker}, timeout {timeout_ms} ms",
                record.shown("params")
            ))
        }
        "reply" | "error" if record.raw("from") != Some("\"broker\"") => {
            let id = record.u64("call_id").unwrap_or(0);
            let call = state.calls.remove(&id);
            if let Some(call) = &call {
                record.set("object", &Value::String(call.object.clone()));
                record.set("method", &Value::String(call.method.clone()));
            }
            let subject = call.map_or_else(
                || "(a call made before monitoring)".to_owned(),
                |c| c.subject,
            );
            if pattern.is_some() && !matches(&subject) {
                return None;
            }
            let elapsed = record.u64("elapsed_us").unwrap_or(0);
            Some(if kind == "reply" {
                format!(
                    "{time} reply  {subject} #{id} answered in {elapsed} µs: {}",
                    record.shown("result")
                )
            } else {
                format!(
                    "{time} error  {subject} #{id} failed in {elapsed} µs, the worker answered {}: {}",
                    record.str("code").unwrap_or_default(),
                    record.str("message").unwrap_or_default()
                )
            })
        }
        "error" => {
            let caller = record.u64("to").unwrap_or(0);
            let code = record.str("code").unwrap_or_default();
            let message = record.str("message").unwrap_or_default();
            let ended = match (record.str("object"), record.str("method")) {
                (Some(object), Some(method)) => {
                    Some((record.u64("call_id"), format!("{object}.{method}")))
                }
                _ => state
                    .take_ended_call(caller, &code, &message, ts)
                    .map(|(id, call)| {
                        record.set("object", &Value::String(call.object));
                        record.set("method", &Value::String(call.method));
                        record.set("call_id", &Value::from(id));
                        (Some(id), call.subject)
                    }),
            };
            let who = state.label(client, caller).await;
            match ended {
                Some((id, subject)) => {
                    if !matches(&subject) {
                        return None;
                    }
                    let id = id.map_or_else(String::new, |id| format!(" #{id}"));
                    Some(format!(
                        "{time} error  {subject}{id} failed, the broker answered {who} {code}: {message}"
                    ))
                }
                None => {
                    // With a pattern, only the refusals of calls: a call the broker refused
                    // before routing it (no_such_object, overloaded) left no call record.
                    let shown = match (pattern, code.as_str()) {
                        (None, _) => true,
                        (Some(p), "no_such_object") => {
                            object_named(&message).is_none_or(|o| object_may_match(p, o))
                        }
                        (Some(_), code) => {
                            ["overloaded", "timeout", "worker_gone", "shutting_down"]
                                .contains(&code)
                        }
                    };
                    if !shown {
                        return None;
                    }
                    let request = record.u64("id").unwrap_or(0);
                    Some(format!(
                        "{time} error  request #{request} of {who} refused by the broker, {code}: {message}"
                    ))
                }
            }
        }
        "event" => {
            let topic = record.str("topic").unwrap_or_default();
            if !matches(&topic) {
                return None;
            }
            let from = state.label(client, record.u64("from").unwrap_or(0)).await;
            let delivered = record.u64("delivered").unwrap_or(0);
            let dropped = record.u64("dropped").unwrap_or(0);
            let dropped = if dropped > 0 {
                format!(" ({dropped} dropped: their queues were full)")
            } else {
                String::new()
            };
            Some(format!(
                "{time} event  {topic} {} published by {from}, delivered to {delivered} subscription(s){dropped}",
                record.shown("data")
            ))
        }
        _ => Some(format!(
            "{time} {kind} {}",
            serde_json::to_string(&record.0).unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_they_are_about() {
        assert_eq!(
            connection_named("the worker, connection 7 (pid 42, plexus-echo), disconnected"),
            Some(7)
        );
        assert_eq!(connection_named("no reply within 5 ms"), None);
        assert_eq!(
            object_named("no object named 'slow' is registered on the bus"),
            Some("slow")
        );
        assert!(object_may_match("slow.*", "slow"));
        assert!(object_may_match("slow.work", "slow"));
        assert!(object_may_match(">", "fast"));
        assert!(!object_may_match("slow.*", "fast"));
    }

    #[test]
    fn a_timeout_ends_the_call_whose_deadline_it_is() {
        let mut m = Monitor::default();
        let call = |subject: &str, deadline_us| OpenCall {
            subject: subject.to_owned(),
            object: String::new(),
            method: String::new(),
            from: 3,
            to: 4,
            deadline_us,
        };
        m.calls.insert(10, call("a.x", 1_000_000));
        m.calls.insert(11, call("a.y", 2_000_000));
        let (id, c) = m
            .take_ended_call(3, "timeout", "no reply within 1000 ms", 2_000_100)
            .expect("a call");
        assert_eq!((id, c.subject.as_str()), (11, "a.y"));
        assert!(m.take_ended_call(9, "timeout", "", 2_000_100).is_none());
        assert!(
            m.take_ended_call(3, "no_such_object", "", 2_000_100)
                .is_none()
        );
    }
}
