//! The name registry: which connection owns which object name, exclusive or as a queue group.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::conn_id::ConnId;
use crate::observe::NameStats;

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

impl Owners {
    /// Whether `conn` is the one and only owner.
    pub fn only(&self, conn: ConnId) -> bool {
        match self {
            Owners::Exclusive(owner) => *owner == conn,
            Owners::Shared { members, .. } => members == &[conn],
        }
    }
}

/// A registered name.
#[derive(Debug)]
pub struct NameEntry {
    /// Its owners.
    pub owners: Owners,
    /// Calls routed to it so far.
    pub calls_served: u64,
    /// Dashboard: what its calls came to.
    pub stats: Arc<NameStats>,
    /// What its owner declared at registration (`{"methods": {...}}`), if anything, kept as the
    /// JSON text it was sent as, so `plexus.introspect` copies it instead of serializing it.
    pub description: Option<Box<RawValue>>,
    /// The method names its description declares (the keys of its `methods` object, sorted),
    /// read once when it is described, so that a call to another method is answered
    /// `no_such_method` without parsing anything; `None` when it declares none.
    pub methods: Option<Box<[String]>>,
}

/// The part of a description the router reads: the names of its declared methods.
#[derive(Deserialize)]
struct Declared {
    methods: BTreeMap<String, IgnoredAny>,
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
                        stats: Arc::default(),
                        description: None,
                        methods: None,
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

    /// Offers the next call to `name` to its owner, or for a queue group to its members in
    /// round-robin order starting with the next one, until `offer` takes it. Returns `None` when
    /// the name is not registered, `Some(Err(n))` when all `n` owners refused, else the owner
    /// that took it (the call is counted).
    pub fn route(
        &mut self,
        name: &str,
        mut offer: impl FnMut(ConnId) -> bool,
    ) -> Option<Result<ConnId, usize>> {
        let entry = self.names.get_mut(name)?;
        let taken = match &mut entry.owners {
            Owners::Exclusive(owner) => offer(*owner).then_some(*owner).ok_or(1),
            Owners::Shared { members, next } => {
                let n = members.len();
                let start = *next % n.max(1);
                let pick = (0..n)
                    .map(|k| (start + k) % n)
                    .find(|i| members.get(*i).is_some_and(|m| offer(*m)));
                match pick.and_then(|i| Some((i, *members.get(i)?))) {
                    Some((i, member)) => {
                        *next = i + 1;
                        Ok(member)
                    }
                    None => {
                        *next = start + 1;
                        Err(n)
                    }
                }
            }
        };
        if taken.is_ok() {
            entry.calls_served += 1;
        }
        Some(taken)
    }

    /// Dashboard: the counters of `name` (fresh ones, counted nowhere, when it is not
    /// registered).
    pub fn name_stats(&self, name: &str) -> Arc<NameStats> {
        self.names
            .get(name)
            .map(|entry| entry.stats.clone())
            .unwrap_or_default()
    }

    /// Records what the owner of `name` declared about it, and the methods it declares (a
    /// `methods` object with at least one key; anything else declares none).
    pub fn describe(&mut self, name: &str, description: Box<RawValue>) {
        if let Some(entry) = self.names.get_mut(name) {
            entry.methods = serde_json::from_str::<Declared>(description.get())
                .ok()
                .map(|declared| declared.methods.into_keys().collect::<Box<[String]>>())
                .filter(|methods| !methods.is_empty());
            entry.description = Some(description);
        }
    }

    /// The methods `name` declares, when it is registered and declares some.
    pub fn declared_methods(&self, name: &str) -> Option<&[String]> {
        self.names.get(name)?.methods.as_deref()
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
    fn declared_methods_are_read_once_from_a_methods_object() {
        let mut r = Registry::default();
        assert_eq!(r.register("a", 1, false), Ok(()));
        assert_eq!(r.declared_methods("a"), None, "nothing declared");
        let cases: &[(&str, Option<&[&str]>)] = &[
            (
                r#"{"methods":{"mul":{},"add":{"params":"{a,b}"}}}"#,
                Some(&["add", "mul"]),
            ),
            (r#"{"methods":{}}"#, None),
            (r#"{"methods":["add"]}"#, None),
            (r#"{"doc":"no methods key"}"#, None),
        ];
        for (text, want) in cases {
            let raw = RawValue::from_string((*text).to_owned()).expect("JSON");
            r.describe("a", raw);
            let got: Option<Vec<&str>> = r
                .declared_methods("a")
                .map(|m| m.iter().map(String::as_str).collect());
            assert_eq!(got.as_deref(), *want, "{text}");
        }
        assert_eq!(r.declared_methods("unregistered"), None);
    }

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
        let picks: Vec<_> = (0..6).filter_map(|_| route(&mut r, "g")).collect();
        assert_eq!(picks, [1, 2, 3, 1, 2, 3]);
        assert_eq!(r.unregister("g", 2), Ok(()));
        let picks: Vec<_> = (0..4).filter_map(|_| route(&mut r, "g")).collect();
        assert_eq!(picks, [1, 3, 1, 3]);
    }

    fn route(r: &mut Registry, name: &str) -> Option<ConnId> {
        r.route(name, |_| true)?.ok()
    }

    #[test]
    fn a_group_member_that_refuses_passes_the_call_to_the_next() {
        let mut r = Registry::default();
        for c in [1, 2, 3] {
            assert_eq!(r.register("g", c, true), Ok(()));
        }
        let picks: Vec<_> = (0..4)
            .filter_map(|_| r.route("g", |c| c != 2)?.ok())
            .collect();
        assert_eq!(
            picks,
            [1, 3, 1, 3],
            "member 2 is skipped, the others keep turns"
        );
        assert_eq!(r.route("g", |_| false), Some(Err(3)), "all refuse");
        assert_eq!(r.get("g").map(|e| e.calls_served), Some(4));
        assert_eq!(r.register("x", 7, false), Ok(()));
        assert_eq!(r.route("x", |_| false), Some(Err(1)));
        assert_eq!(r.route("y", |_| true), None);
    }
}
