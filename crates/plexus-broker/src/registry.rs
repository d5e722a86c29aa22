//! The name registry: which connection owns which object name, exclusive or as a queue group.

use std::collections::HashMap;

use serde_json::value::RawValue;

use crate::conn_id::ConnId;

/// Who owns a name.
#[derive(Debug)]
pub enum Owners {
    /// One connection.
    Exclusive(ConnId),
    /// A queue group: calls go round-robin over the members.
    Shared {
        /// Member connections, in join order.
        members: Vec<ConnId>,
        /// Index of the member that gets the next call.
        next: usize,
    },
}

/// A registered name.
#[derive(Debug)]
pub struct NameEntry {
    /// Its owners.
    pub owners: Owners,
    /// Calls routed to it so far.
    pub calls_served: u64,
    /// What its owner declared at registration (`{"methods": {...}}`), if anything, kept as the
    /// JSON text it was sent as, so `plexus.introspect` copies it instead of serializing it.
    pub description: Option<Box<RawValue>>,
}

/// Why a registration or unregistration was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum RegistryRefusal {
    /// Owned by another connection (or exclusively, or as a group when exclusive was asked).
    Taken(ConnId),
    /// Not registered at all.
    NotRegistered,
    /// Registered, but not by this connection.
    NotOwner,
}

/// All registered names.
#[derive(Debug, Default)]
pub struct Registry {
    names: HashMap<String, NameEntry>,
}

impl Registry {
    /// Registers `name` for `conn`. Registering a name one already holds the same way is a no-op.
    pub fn register(
        &mut self,
        name: &str,
        conn: ConnId,
        shared: bool,
    ) -> Result<(), RegistryRefusal> {
        match self.names.get_mut(name) {
            None => {
                let owners = if shared {
                    Owners::Shared {
                        members: vec![conn],
                        next: 0,
                    }
                } else {
                    Owners::Exclusive(conn)
                };
                self.names.insert(
                    name.to_owned(),
                    NameEntry {
                        owners,
                        calls_served: 0,
                        description: None,
                    },
                );
                Ok(())
            }
            Some(entry) => match (&mut entry.owners, shared) {
                (Owners::Exclusive(owner), false) if *owner == conn => Ok(()),
                (Owners::Exclusive(owner), _) => Err(RegistryRefusal::Taken(*owner)),
                (Owners::Shared { members, .. }, true) => {
                    if !members.contains(&conn) {
                        members.push(conn);
                    }
                    Ok(())
                }
                (Owners::Shared { members, .. }, false) => Err(RegistryRefusal::Taken(
                    members.first().copied().unwrap_or(conn),
                )),
            },
        }
    }

    /// Removes `conn` from `name`.
    pub fn unregister(&mut self, name: &str, conn: ConnId) -> Result<(), RegistryRefusal> {
        let entry = self
            .names
            .get_mut(name)
            .ok_or(RegistryRefusal::NotRegistered)?;
        let now_empty = match &mut entry.owners {
            Owners::Exclusive(owner) if *owner == conn => true,
            Owners::Exclusive(_) => return Err(RegistryRefusal::NotOwner),
            Owners::Shared { members, next } => {
                let pos = members
                    .iter()
                    .position(|m| *m == conn)
                    .ok_or(RegistryRefusal::NotOwner)?;
                members.remove(pos);
                if *next > pos {
                    *next -= 1;
                }
                members.is_empty()
            }
        };
        if now_empty {
            self.names.remove(name);
        }
        Ok(())
    }

    /// Picks the connection that gets the next call to `name`, counting the call.
    pub fn route(&mut self, name: &str) -> Option<ConnId> {
        let entry = self.names.get_mut(name)?;
        let target = match &mut entry.owners {
            Owners::Exclusive(owner) => *owner,
            Owners::Shared { members, next } => {
                let i = *next % members.len().max(1);
                *next = i + 1;
                *members.get(i)?
            }
        };
        entry.calls_served += 1;
        Some(target)
    }

    /// Records what the owner of `name` declared about it.
    pub fn describe(&mut self, name: &str, description: Box<RawValue>) {
        if let Some(entry) = self.names.get_mut(name) {
            entry.description = Some(description);
        }
    }

    /// The entry for `name`.
    pub fn get(&self, name: &str) -> Option<&NameEntry> {
        self.names.get(name)
    }

    /// Whether `name` is registered.
    /// The broker's own object always is.
    pub fn contains(&self, name: &str) -> bool {
        name == plexus_proto::BROKER_OBJECT || self.names.contains_key(name)
    }

    /// Every name with its entry.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &NameEntry)> {
        self.names.iter()
    }

    /// Number of names.
    pub fn count(&self) -> usize {
        self.names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_and_shared() {
        let mut r = Registry::default();
        assert_eq!(r.register("a", 1, false), Ok(()));
        assert_eq!(r.register("a", 1, false), Ok(()));
        assert_eq!(r.register("a", 2, false), Err(RegistryRefusal::Taken(1)));
        assert_eq!(r.register("a", 2, true), Err(RegistryRefusal::Taken(1)));
        assert_eq!(r.unregister("a", 2), Err(RegistryRefusal::NotOwner));
        assert_eq!(r.unregister("a", 1), Ok(()));
        assert_eq!(r.unregister("a", 1), Err(RegistryRefusal::NotRegistered));
        for c in [1, 2, 3] {
            assert_eq!(r.register("g", c, true), Ok(()));
        }
        assert_eq!(r.register("g", 4, false), Err(RegistryRefusal::Taken(1)));
        let picks: Vec<_> = (0..6).filter_map(|_| r.route("g")).collect();
        assert_eq!(picks, [1, 2, 3, 1, 2, 3]);
        assert_eq!(r.unregister("g", 2), Ok(()));
        let picks: Vec<_> = (0..4).filter_map(|_| r.route("g")).collect();
        assert_eq!(picks, [1, 3, 1, 3]);
    }
}
