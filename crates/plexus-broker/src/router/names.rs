//! Names: registering and unregistering objects, exclusively or as queue groups, within the name
//! limits, with what their owners declare about them.

use plexus_proto::{BROKER_OBJECT, ErrorCode, Frame, flags, validate_name};
use serde_json::json;

use super::State;
use crate::conn_id::ConnId;
use crate::registry::RegistryRefusal;

impl State {
    /// Registers the frame's name for `conn` (in a queue group when flagged `shared`) and answers
    /// waiters the name completes.
    pub(super) fn register(&mut self, conn: ConnId, frame: &Frame) {
        let (id, name) = (frame.id(), frame.string(0));
        if let Err(e) = validate_name(name) {
            return self.fail(conn, id, ErrorCode::InvalidParams, &e.to_string(), b"");
        }
        if name == BROKER_OBJECT {
            let msg = format!("the name '{BROKER_OBJECT}' belongs to the broker");
            return self.fail(conn, id, ErrorCode::PermissionDenied, &msg, b"");
        }
        let shared = frame.flags() & flags::SHARED != 0;
        let payload = frame.payload();
        let description = if payload.is_empty() {
            None
        } else {
            match serde_json::from_slice::<serde_json::Value>(&payload) {
                Ok(v @ serde_json::Value::Object(_)) => Some(v),
                _ => {
                    let msg =
                        "a register payload must be a JSON object like {\"methods\":{\"add\":{}}}";
                    return self.fail(conn, id, ErrorCode::InvalidParams, msg, b"");
                }
            }
        };
        if let Err(msg) = self.room_for_name(conn, name) {
            return self.fail(conn, id, ErrorCode::Overloaded, &msg, b"");
        }
        match self.registry.register(name, conn, shared) {
            Ok(()) => {
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
                let how = if shared { "exclusively" } else { "already" };
                let msg = format!("name '{name}' is {how} owned by {who}");
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
