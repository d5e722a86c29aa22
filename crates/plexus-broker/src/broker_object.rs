//! The broker's own object, `plexus`: `ping`, `list`, `wait_for` and `stats`, answered by the
//! broker like any worker would.

use std::time::Instant;

use plexus_proto::{ErrorCode, Frame, validate_name};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::conn_id::ConnId;
use crate::pending::Waiter;
use crate::registry::Owners;
use crate::router::State;

/// The methods, for `no_such_method` messages.
const METHODS: &str = "ping, list, wait_for, stats, introspect";

#[derive(Deserialize)]
#[serde(untagged)]
enum WaitParams {
    Full {
        names: Vec<String>,
        timeout_ms: Option<u64>,
    },
    Names(Vec<String>),
}

/// Answers a call to the `plexus` object; `deadline` is the call's own.
pub fn call(st: &mut State, conn: ConnId, frame: &Frame, deadline: Instant) {
    let id = frame.id();
    let result = match frame.string(1) {
        "ping" => json!({ "pong": true, "conn_id": conn }),
        "list" => list(st),
        "stats" => stats(st),
        "wait_for" => return wait_for(st, conn, frame, deadline),
        "introspect" => match introspect(st, &frame.payload()) {
            Ok(v) => v,
            Err((code, msg)) => return st.fail(conn, id, code, &msg, b""),
        },
        other => {
            let msg =
                format!("the broker object 'plexus' has no method '{other}'; it has {METHODS}");
            return st.fail(conn, id, ErrorCode::NoSuchMethod, &msg, b"");
        }
    };
    st.send_always(conn, Frame::reply(id, result.to_string().as_bytes()));
}

fn wait_for(st: &mut State, conn: ConnId, frame: &Frame, deadline: Instant) {
    let id = frame.id();
    let (names, timeout_ms) = match serde_json::from_slice::<WaitParams>(&frame.payload()) {
        Ok(WaitParams::Full { names, timeout_ms }) => (names, timeout_ms),
        Ok(WaitParams::Names(names)) => (names, None),
        Err(e) => {
            let msg = format!(
                "wait_for takes {{\"names\":[...],\"timeout_ms\":N}} or a list of names: {e}"
            );
            return st.fail(conn, id, ErrorCode::InvalidParams, &msg, b"");
        }
    };
    if let Some(e) = names.iter().find_map(|n| validate_name(n).err()) {
        return st.fail(conn, id, ErrorCode::InvalidParams, &e.to_string(), b"");
    }
    let now = Instant::now();
    let deadline = match timeout_ms {
        Some(ms) => deadline.min(now + std::time::Duration::from_millis(ms)),
        None => deadline,
    };
    st.wait_for(Waiter {
        caller: conn,
        caller_id: id,
        names,
        deadline,
    });
}

/// What the broker's own object declares.
fn own_description() -> Value {
    json!({ "methods": {
        "ping": { "params": "anything", "result": "{pong, conn_id}" },
        "list": { "params": "none", "result": "[{name, kind, owners, calls_served}]" },
        "wait_for": { "params": "{names, timeout_ms} or [names]", "result": "{names}" },
        "stats": { "params": "none", "result": "counters" },
        "introspect": { "params": "{name} or name", "result": "{name, kind, owners, description}" },
    }})
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IntrospectParams {
    Full { name: String },
    Name(String),
}

fn introspect(st: &State, params: &[u8]) -> Result<Value, (ErrorCode, String)> {
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
        return Ok(
            json!({ "name": name, "kind": "broker", "owners": 0, "description": own_description() }),
        );
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
    Ok(json!({ "name": name, "kind": kind, "owners": owners, "description": entry.description }))
}

fn list(st: &State) -> Value {
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

fn stats(st: &State) -> Value {
    st.stats.to_json(&[
        ("connections", st.conns.len()),
        ("names", st.registry.count()),
        ("subscriptions", st.subs.count()),
        ("pending_calls", st.pending.calls_len()),
    ])
}
