//! The broker's own object, `plexus`: works out the answer to `ping`, `list`, `subscriptions`,
//! `wait_for`, `stats` and `introspect` from the router's state, for the router to send.

use std::time::{Duration, Instant};

use plexus_proto::{ErrorCode, Frame, HEADER_LEN, validate_name};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::State;
use crate::config::Config;
use crate::conn_id::ConnId;
use crate::pending::Waiter;
use crate::registry::Owners;

/// The methods, for `no_such_method` messages.
const METHODS: &str = "ping, list, subscriptions, wait_for, stats, introspect, whoami";

/// The method that tells a peer who the broker thinks it is and what it may do; every peer may
/// call it, whatever the policy says (access control).
pub const WHOAMI: &str = "whoami";

/// How the broker object answers a call.
#[derive(Debug)]
pub enum BrokerAnswer {
    /// A reply with this JSON payload.
    Reply(Vec<u8>),
    /// An error with this code and message.
    Fail(ErrorCode, String),
    /// A reply once every name the waiter lists is registered, or `timeout` at its deadline.
    Wait(Waiter),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WaitParams {
    Full {
        names: Vec<String>,
        timeout_ms: Option<u64>,
    },
    Names(Vec<String>),
}

/// The answer to `conn`'s call `frame` to the `plexus` object, made at `now`; `deadline` is the
/// call's own.
pub fn answer(
    st: &State,
    conn: ConnId,
    frame: &Frame,
    now: Instant,
    deadline: Instant,
) -> BrokerAnswer {
    let result = match frame.string(1) {
        "ping" => Ok(json!({ "pong": true, "conn_id": conn })
            .to_string()
            .into_bytes()),
        "list" => Ok(list(st, details(st, conn)).to_string().into_bytes()),
        "subscriptions" => Ok(subscriptions(st, details(st, conn))
            .to_string()
            .into_bytes()),
        WHOAMI => Ok(whoami(st, conn).to_string().into_bytes()),
        "stats" => Ok(stats(st).to_string().into_bytes()),
        "wait_for" => return wait_for(st, conn, frame, now, deadline),
        "introspect" => introspect(st, &frame.payload()),
        other => Err((
            ErrorCode::NoSuchMethod,
            format!("the broker object 'plexus' has no method '{other}'; it has {METHODS}"),
        )),
    };
    let max_frame = st.config.max_frame as usize;
    match result {
        Ok(bytes) if bytes.len() + HEADER_LEN > max_frame => {
            let message = format!(
                "the answer to plexus.{} would be a frame of {} bytes, over the limit (max_frame = {max_frame})",
                frame.string(1),
                bytes.len() + HEADER_LEN
            );
            BrokerAnswer::Fail(ErrorCode::Overloaded, message)
        }
        Ok(bytes) => BrokerAnswer::Reply(bytes),
        Err((code, message)) => BrokerAnswer::Fail(code, message),
    }
}

/// A waiter for the names in the call's params (at most `max_wait_names`), whose deadline is the
/// earlier of the call's (itself at most `max_call_timeout` away) and the params' `timeout_ms`.
fn wait_for(
    st: &State,
    conn: ConnId,
    frame: &Frame,
    now: Instant,
    deadline: Instant,
) -> BrokerAnswer {
    let (names, timeout_ms) = match serde_json::from_slice::<WaitParams>(&frame.payload()) {
        Ok(WaitParams::Full { names, timeout_ms }) => (names, timeout_ms),
        Ok(WaitParams::Names(names)) => (names, None),
        Err(e) => {
            let msg = format!(
                "wait_for takes {{\"names\":[...],\"timeout_ms\":N}} or a list of names: {e}"
            );
            return BrokerAnswer::Fail(ErrorCode::InvalidParams, msg);
        }
    };
    let most = st.config.max_wait_names;
    if names.len() > most {
        let msg = format!(
            "wait_for lists {} names, over the limit (max_wait_names = {most})",
            names.len()
        );
        return BrokerAnswer::Fail(ErrorCode::InvalidParams, msg);
    }
    if let Some(e) = names.iter().find_map(|n| validate_name(n).err()) {
        return BrokerAnswer::Fail(ErrorCode::InvalidParams, e.to_string());
    }
    let deadline = match timeout_ms {
        Some(ms) => now + Duration::from_millis(ms).min(deadline.saturating_duration_since(now)),
        None => deadline,
    };
    BrokerAnswer::Wait(Waiter {
        caller: conn,
        caller_id: frame.id(),
        names,
        deadline,
    })
}

/// What the broker's own object declares.
fn own_description() -> Value {
    json!({ "methods": {
        "ping": { "params": "anything", "result": "{pong, conn_id}" },
        "list": { "params": "none", "result": "[{name, kind, owners, calls_served}]" },
        "subscriptions": { "params": "none", "result": "[{pattern, queue?, conn_id, client, pid}]" },
        "wait_for": { "params": "{names, timeout_ms} or [names]", "result": "{names}" },
        "stats": { "params": "none", "result": "counters" },
        "introspect": { "params": "{name} or name", "result": "{name, kind, owners, description}" },
        "whoami": { "params": "none", "result": "{conn_id, uid, gid, groups, pid, transport, token, policy}" },
    }})
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IntrospectParams {
    Full { name: String },
    Name(String),
}

/// An `introspect` answer: the description is copied as the text it was registered with.
#[derive(Serialize)]
struct Introspection<'a> {
    name: &'a str,
    kind: &'static str,
    owners: usize,
    description: Option<&'a RawValue>,
}

fn introspect(st: &State, params: &[u8]) -> Result<Vec<u8>, (ErrorCode, String)> {
    let name = match serde_json::from_slice::<IntrospectParams>(params) {
        Ok(IntrospectParams::Full { name } | IntrospectParams::Name(name)) => name,
        Err(e) => {
            return Err((
                ErrorCode::InvalidParams,
                format!("introspect takes {{\"name\":N}} or a name: {e}"),
            ));
        }
    };
    if name == plexus_proto::BROKER_OBJECT {
        let answer = json!({ "name": name, "kind": "broker", "owners": 0, "description": own_description() });
        return Ok(answer.to_string().into_bytes());
    }
    let entry = st.registry.get(&name).ok_or_else(|| {
        (
            ErrorCode::NoSuchObject,
            format!("no object named '{name}' is registered on the bus"),
        )
    })?;
    let (kind, owners) = match &entry.owners {
        Owners::Exclusive(_) => ("exclusive", 1),
        Owners::Shared { members, .. } => ("shared", members.len()),
    };
    let answer = Introspection {
        name: &name,
        kind,
        owners,
        description: entry.description.as_deref(),
    };
    serde_json::to_vec(&answer).map_err(|e| {
        (
            ErrorCode::Internal,
            format!("the introspect answer could not be written: {e}"),
        )
    })
}

/// Whether `conn` may see who owns names and subscriptions (access control).
fn details(st: &State, conn: ConnId) -> bool {
    st.conns.get(&conn).is_some_and(|c| c.access.list_details())
}

/// Who the caller is to the broker, and what the policy lets it do.
fn whoami(st: &State, conn: ConnId) -> Value {
    let Some(c) = st.conns.get(&conn) else {
        return Value::Null;
    };
    let peer = &c.peer;
    let policy = st.config.policy.as_ref().map(|policy| {
        json!({
            "source": policy.source,
            "subject": c.access.capabilities().map(|caps| caps.subject.as_str()),
            "rights": c.access.capabilities().map(|caps| caps.to_json()),
            "quotas": policy.quotas,
            "quota_owner": c.owner.to_string(),
        })
    });
    json!({
        "conn_id": conn,
        "client": peer.client,
        "transport": peer.transport,
        "addr": peer.addr,
        "uid": peer.uid,
        "gid": peer.gid,
        "groups": peer.groups,
        "pid": peer.pid,
        "pidfd": peer.pidfd.is_some(),
        "token": peer.token,
        "policy": policy,
    })
}

fn list(st: &State, details: bool) -> Value {
    let mut names: Vec<Value> = st
        .registry
        .iter()
        .map(|(name, entry)| {
            let (kind, members) = match &entry.owners {
                Owners::Exclusive(c) => ("exclusive", vec![*c]),
                Owners::Shared { members, .. } => ("shared", members.clone()),
            };
            let owners: Vec<Value> = members
                .iter()
                .map(|c| {
                    if !details {
                        return json!({ "conn_id": c });
                    }
                    let peer = st.conns.get(c).map(|conn| &conn.peer);
                    json!({
                        "conn_id": c,
                        "client": peer.map(|p| p.client.as_str()),
                        "pid": peer.and_then(|p| p.pid),
                        "uid": peer.and_then(|p| p.uid),
                        "exe": peer.and_then(|p| p.exe.as_deref()),
                    })
                })
                .collect();
            json!({ "name": name, "kind": kind, "owners": owners, "calls_served": entry.calls_served })
        })
        .collect();
    names.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Value::Array(names)
}

/// Every subscription on the bus, with its queue group if it is in one, by connection then
/// pattern.
fn subscriptions(st: &State, details: bool) -> Value {
    let mut subs: Vec<(ConnId, &str, Option<&str>)> = st
        .conns
        .iter()
        .flat_map(|(conn_id, conn)| {
            conn.subs.values().map(move |sub| {
                let queue = sub
                    .queue
                    .and_then(|group| st.queues.get(group))
                    .map(|group| group.name.as_str());
                (*conn_id, sub.pattern.as_str(), queue)
            })
        })
        .collect();
    subs.sort_unstable();
    let subs = subs
        .into_iter()
        .map(|(conn_id, pattern, queue)| {
            let peer = st.conns.get(&conn_id).map(|conn| &conn.peer);
            let mut sub = if !details {
                json!({ "pattern": pattern, "conn_id": conn_id })
            } else {
                json!({
                "pattern": pattern,
                "conn_id": conn_id,
                "client": peer.map(|p| p.client.as_str()),
                "pid": peer.and_then(|p| p.pid),
                })
            };
            if let (Some(queue), Some(map)) = (queue, sub.as_object_mut()) {
                map.insert("queue".into(), queue.into());
            }
            sub
        })
        .collect();
    Value::Array(subs)
}

fn stats(st: &State) -> Value {
    let mut out = st.stats.to_json(&[
        ("connections", st.conns.len()),
        ("names", st.registry.count()),
        ("subscriptions", st.subscription_count()),
        ("pending_calls", st.pending.calls_len()),
        ("pending_waits", st.pending.waiters_len()),
    ]);
    if let Some(map) = out.as_object_mut() {
        map.insert("limits".into(), limits(&st.config));
        // Cluster.
        if let Some(port) = &st.cluster {
            map.insert(
                "cluster".into(),
                port.stats.to_json(&port.cluster, &port.node),
            );
        }
    }
    out
}

/// Every limit by its config-file key.
fn limits(config: &Config) -> Value {
    json!({
        "max_frame": config.max_frame,
        "outbox_limit": config.outbox_limit,
        "max_connections": config.max_connections,
        "call_timeout_ms": config.default_call_timeout.as_millis(),
        "max_pending_per_connection": config.max_pending_per_connection,
        "max_call_timeout_ms": config.max_call_timeout.as_millis(),
        "max_pending": config.max_pending,
        "max_wait_names": config.max_wait_names,
        "max_names_per_connection": config.max_names_per_connection,
        "max_names": config.max_names,
        "max_subscriptions_per_connection": config.max_subscriptions_per_connection,
        "max_subscriptions": config.max_subscriptions,
        "max_description_bytes": config.max_description_bytes,
        "slow_consumer": config.slow_consumer.name(),
        // Publish stall.
        "publish_stall_ms": config.publish_stall.as_millis(),
        // Contracts.
        "max_contract_depth": config.max_contract_depth,
        "check_results": config.check_results,
    })
}
