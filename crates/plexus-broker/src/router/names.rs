//! Names: registering and unregistering objects, exclusively or as queue groups, within the name
//! limits, with what their owners declare about them (within the description limit).

use plexus_proto::{BROKER_OBJECT, ErrorCode, Frame, flags, validate_name};
use serde_json::json;
use serde_json::value::RawValue;

use super::monitor::CallName;
use super::{State, raw_json};
use crate::conn_id::ConnId;
use crate::policy::Action;
use crate::quotas::Resource;
use crate::registry::{Owners, RegistryRefusal};

impl State {
    /// Registers the frame's name for `conn` (in a queue group when flagged `shared`) and answers
    /// waiters the name completes.
    pub(super) fn register(&mut self, conn: ConnId, frame: &Frame) {
        let (id, name) = (frame.id(), frame.string(0));
        // Contracts.
        let prepared = self.take_prepared(conn, frame);
        if let Err(e) = validate_name(name) {
            return self.fail(conn, id, ErrorCode::InvalidParams, &e.to_string(), b"");
        }
        if name == BROKER_OBJECT {
            let msg = format!("the name '{BROKER_OBJECT}' belongs to the broker");
            return self.fail(conn, id, ErrorCode::PermissionDenied, &msg, b"");
        }
        let shared = frame.flags() & flags::SHARED != 0;
        // Access control.
        let action = if shared { Action::Join } else { Action::Own };
        if let Some(Err(denied)) = self.access(conn).map(|a| a.name(action, name)) {
            return self.refuse(conn, id, CallName::default(), denied);
        }
        let description = match self.description(&frame.payload()) {
            Ok(description) => description,
            Err(msg) => return self.fail(conn, id, ErrorCode::InvalidParams, &msg, b""),
        };
        if let Err(msg) = self.room_for_name(conn, name) {
            return self.fail(conn, id, ErrorCode::Overloaded, &msg, b"");
        }
        let held_before = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.names.contains(name));
        if !held_before && let Err(msg) = self.room_under_quota(conn, Resource::Names) {
            return self.fail(conn, id, ErrorCode::Overloaded, &msg, b"");
        }
        match self.registry.register(name, conn, shared) {
            Ok(()) => {
                // Contracts.
                let verdict =
                    match self.decide_contract(conn, name, description.as_deref(), prepared) {
                        Ok(verdict) => verdict,
                        Err(msg) => {
                            if !held_before {
                                let _ = self.registry.unregister(name, conn);
                            }
                            return self.fail(conn, id, ErrorCode::InvalidParams, &msg, b"");
                        }
                    };
                self.contracts.install(name, verdict);
                let description = description.or_else(|| {
                    self.contracts
                        .pinned_description(name)
                        .map(ToOwned::to_owned)
                });
                if let Some(description) = description {
                    self.registry.describe(name, description);
                }
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.names.insert(name.to_owned());
                }
                self.ok(conn, id);
                self.answer_waiters_for(name);
            }
            Err(refusal) => {
                let owner = match refusal {
                    RegistryRefusal::Taken(owner) => owner,
                    RegistryRefusal::NotRegistered | RegistryRefusal::NotOwner => conn,
                };
                let who = self
                    .conns
                    .get(&owner)
                    .map(|c| c.peer.describe(owner))
                    .unwrap_or_default();
                let group = matches!(
                    self.registry.get(name).map(|entry| &entry.owners),
                    Some(Owners::Shared { .. })
                );
                let msg = match (group, shared) {
                    (true, _) => format!(
                        "name '{name}' is a queue group (first member {who}); join it as a queue group member with --shared (Client::serve_shared)"
                    ),
                    (false, true) => format!(
                        "name '{name}' is exclusively owned by {who}, not a queue group; a group forms only when every member registers with --shared (Client::serve_shared)"
                    ),
                    (false, false) => format!("name '{name}' is already owned by {who}"),
                };
                let data = json!({ "name": name, "owner_conn": owner }).to_string();
                self.fail(conn, id, ErrorCode::NameTaken, &msg, data.as_bytes());
            }
        }
    }

    /// Takes the frame's name away from `conn`.
    pub(super) fn unregister(&mut self, conn: ConnId, frame: &Frame) {
        let (id, name) = (frame.id(), frame.string(0));
        if name == BROKER_OBJECT {
            let msg = format!("the name '{BROKER_OBJECT}' belongs to the broker");
            return self.fail(conn, id, ErrorCode::PermissionDenied, &msg, b"");
        }
        match self.registry.unregister(name, conn) {
            Ok(()) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.names.remove(name);
                }
                self.drop_contract_if_gone(name);
                self.ok(conn, id);
            }
            Err(RegistryRefusal::NotRegistered | RegistryRefusal::Taken(_)) => {
                let msg = format!("no object named '{name}' is registered");
                self.fail(conn, id, ErrorCode::NoSuchObject, &msg, b"");
            }
            Err(RegistryRefusal::NotOwner) => {
                let msg =
                    format!("name '{name}' is registered by another connection, not this one");
                self.fail(conn, id, ErrorCode::PermissionDenied, &msg, b"");
            }
        }
    }

    /// A register payload as the description to keep: `None` when empty, else a JSON object
    /// within `max_description_bytes` and nested at most [`raw_json::MAX_NESTING`] deep, kept as
    /// its text.
    fn description(&self, payload: &[u8]) -> Result<Option<Box<RawValue>>, String> {
        if payload.is_empty() {
            return Ok(None);
        }
        let limit = self.config.max_description_bytes;
        if payload.len() > limit {
            return Err(format!(
                "the register payload (the description) is {} bytes, over the limit (max_description_bytes = {limit})",
                payload.len()
            ));
        }
        match raw_json::embeddable(payload) {
            Some(raw) if raw.get().starts_with('{') => Ok(Some(raw.to_owned())),
            _ => Err(format!(
                "a register payload must be a JSON object like {{\"methods\":{{\"add\":{{}}}}}}, nested at most {} deep",
                raw_json::MAX_NESTING
            )),
        }
    }

    /// Whether `conn` may take one more name: `Err` with the message naming the limit it hits.
    /// A name it already holds, or a group that already exists, does not count again.
    fn room_for_name(&self, conn: ConnId, name: &str) -> Result<(), String> {
        let held = self.conns.get(&conn).map_or(0, |c| c.names.len());
        let holds = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.names.contains(name));
        let per_conn = self.config.max_names_per_connection;
        if !holds && held >= per_conn {
            return Err(format!(
                "this connection already holds {held} names, the limit (max_names_per_connection = {per_conn}); unregister some first"
            ));
        }
        let total = self.config.max_names;
        if self.registry.get(name).is_none() && self.registry.count() >= total {
            return Err(format!(
                "the broker already holds {} names, the limit (max_names = {total}); try again later",
                self.registry.count()
            ));
        }
        Ok(())
    }
}
