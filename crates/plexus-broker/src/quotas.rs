//! Per-user quotas, like dbus-broker's: what all the connections of one uid (or all anonymous
//! peers, or all token peers, or the cluster link) may hold together, and the book of which
//! connections are whose.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::conn_id::ConnId;
use crate::peer::PeerInfo;

/// Limits per user; `None` leaves only the broker-wide and per-connection limits.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Connections open at once.
    pub connections: Option<usize>,
    /// Names held (exclusively or as queue group members).
    pub names: Option<usize>,
    /// Subscriptions held.
    pub subscriptions: Option<usize>,
    /// Requests (calls and waits) waiting for answers.
    pub pending_calls: Option<usize>,
    /// Bytes queued to the user's connections and not yet written.
    pub outgoing_bytes: Option<usize>,
    // Cluster quota class (issue 16): `[quotas.cluster]`.
    /// The cluster link's own limits (`[quotas.cluster]`); keys it does not set are the per-user
    /// ones above, which the link gets as a bucket of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterQuotas>,
}

/// `[quotas.cluster]`: what calls from other brokers (all of them together, through the cluster
/// link) may hold on this broker.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterQuotas {
    /// Calls from other brokers waiting for answers here.
    pub pending_calls: Option<usize>,
}

/// What a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Connections.
    Connections,
    /// Names.
    Names,
    /// Subscriptions.
    Subscriptions,
    /// Pending requests.
    PendingCalls,
}

impl Resource {
    /// Its key in `[quotas]`.
    pub fn key(self) -> &'static str {
        match self {
            Resource::Connections => "connections",
            Resource::Names => "names",
            Resource::Subscriptions => "subscriptions",
            Resource::PendingCalls => "pending_calls",
        }
    }
}

impl Quotas {
    /// The limit on `resource`.
    pub fn limit(&self, resource: Resource) -> Option<usize> {
        match resource {
            Resource::Connections => self.connections,
            Resource::Names => self.names,
            Resource::Subscriptions => self.subscriptions,
            Resource::PendingCalls => self.pending_calls,
        }
    }

    /// Whether any owner has a limit on `resource`.
    pub fn limits(&self, resource: Resource) -> bool {
        self.limit(resource).is_some() || self.cluster_limit(resource).is_some()
    }

    /// The cluster link's own limit on `resource` (`[quotas.cluster]`), if it has one.
    fn cluster_limit(&self, resource: Resource) -> Option<usize> {
        match resource {
            Resource::PendingCalls => self.cluster.and_then(|c| c.pending_calls),
            _ => None,
        }
    }

    /// `owner`'s limit on `resource`, and the policy key that sets it.
    pub fn limit_for(&self, owner: Owner, resource: Resource) -> Option<(usize, String)> {
        let own = (owner == Owner::Cluster)
            .then(|| self.cluster_limit(resource))
            .flatten();
        match own {
            Some(limit) => Some((limit, format!("quotas.cluster.{}", resource.key()))),
            None => self
                .limit(resource)
                .map(|limit| (limit, format!("quotas.{}", resource.key()))),
        }
    }

    /// Whether `owner`, already using `used`, may take one more `resource`: `Err` names the
    /// quota.
    pub fn room(&self, resource: Resource, owner: Owner, used: usize) -> Result<(), String> {
        match self.limit_for(owner, resource) {
            Some((limit, key)) if used >= limit => Err(format!(
                "{owner} already has {used} {}, its quota ({key} = {limit} in the policy); release some first",
                resource.key().replace('_', " "),
            )),
            _ => Ok(()),
        }
    }
}

/// Whose quota a connection counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// A Unix socket peer's user.
    Uid(u32),
    /// TCP peers that presented the token.
    Token,
    /// Peers with neither.
    Anonymous,
    /// The cluster link: calls from other brokers (issue 16).
    Cluster,
}

impl Owner {
    /// The owner of `peer`'s connection.
    pub fn of(peer: &PeerInfo) -> Owner {
        match (peer.uid, peer.token) {
            (Some(uid), _) => Owner::Uid(uid),
            (None, true) => Owner::Token,
            (None, false) => Owner::Anonymous,
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Uid(uid) => write!(f, "uid {uid}"),
            Owner::Token => f.write_str("the token's peers"),
            Owner::Anonymous => f.write_str("anonymous peers"),
            Owner::Cluster => f.write_str("the cluster link (calls from other brokers)"),
        }
    }
}

/// The bytes queued to all the connections of one owner, against `quotas.outgoing_bytes`; the
/// outboxes of its connections count into it.
#[derive(Debug)]
pub struct ByteQuota {
    queued: AtomicUsize,
    limit: usize,
}

impl ByteQuota {
    /// Whether `len` more bytes fit.
    pub fn has_room(&self, len: usize) -> bool {
        self.queued.load(Ordering::Relaxed) + len <= self.limit
    }

    /// Counts `len` bytes queued.
    pub fn add(&self, len: usize) {
        self.queued.fetch_add(len, Ordering::Relaxed);
    }

    /// Counts `len` bytes written (or dropped).
    pub fn sub(&self, len: usize) {
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(len))
            });
    }
}

/// Which connections each owner has open, and the byte quota they share.
#[derive(Debug, Default)]
pub struct Book {
    conns: HashMap<Owner, HashSet<ConnId>>,
    bytes: HashMap<Owner, Arc<ByteQuota>>,
}

impl Book {
    /// Records `conn` as `owner`'s.
    pub fn open(&mut self, owner: Owner, conn: ConnId) {
        self.conns.entry(owner).or_default().insert(conn);
    }

    /// Forgets `conn`; an owner's byte quota goes with its last connection.
    pub fn close(&mut self, owner: Owner, conn: ConnId) {
        if let Some(set) = self.conns.get_mut(&owner) {
            set.remove(&conn);
            if set.is_empty() {
                self.conns.remove(&owner);
                self.bytes.remove(&owner);
            }
        }
    }

    /// The byte quota `owner`'s connections share, `limit` bytes.
    pub fn byte_quota(&mut self, owner: Owner, limit: usize) -> Arc<ByteQuota> {
        self.bytes
            .entry(owner)
            .or_insert_with(|| {
                Arc::new(ByteQuota {
                    queued: AtomicUsize::new(0),
                    limit,
                })
            })
            .clone()
    }

    /// `owner`'s connections.
    pub fn conns(&self, owner: Owner) -> impl Iterator<Item = ConnId> + '_ {
        self.conns.get(&owner).into_iter().flatten().copied()
    }

    /// How many connections `owner` has open.
    pub fn count(&self, owner: Owner) -> usize {
        self.conns.get(&owner).map_or(0, HashSet::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_refuses_at_its_limit_naming_it() {
        let quotas = Quotas {
            names: Some(2),
            ..Quotas::default()
        };
        assert!(quotas.room(Resource::Names, Owner::Uid(7), 1).is_ok());
        let err = quotas
            .room(Resource::Names, Owner::Uid(7), 2)
            .expect_err("at the limit");
        assert!(
            err.contains("uid 7") && err.contains("quotas.names = 2"),
            "{err}"
        );
        assert!(
            quotas
                .room(Resource::Subscriptions, Owner::Uid(7), 1_000)
                .is_ok()
        );
    }

    #[test]
    fn the_cluster_link_has_its_own_quota_or_a_users() {
        let shared = Quotas {
            pending_calls: Some(2),
            ..Quotas::default()
        };
        let err = shared
            .room(Resource::PendingCalls, Owner::Cluster, 2)
            .expect_err("a user's quota applies to the link");
        assert!(
            err.contains("cluster link") && err.contains("(quotas.pending_calls = 2"),
            "{err}"
        );
        let own = Quotas {
            cluster: Some(ClusterQuotas {
                pending_calls: Some(5),
            }),
            ..shared
        };
        assert!(own.room(Resource::PendingCalls, Owner::Cluster, 4).is_ok());
        let err = own
            .room(Resource::PendingCalls, Owner::Cluster, 5)
            .expect_err("at the link's own limit");
        assert!(err.contains("quotas.cluster.pending_calls = 5"), "{err}");
        assert!(
            own.room(Resource::PendingCalls, Owner::Anonymous, 2)
                .is_err(),
            "users keep theirs"
        );
        let only_cluster = Quotas {
            cluster: own.cluster,
            ..Quotas::default()
        };
        assert!(only_cluster.limits(Resource::PendingCalls));
        assert!(
            only_cluster
                .room(Resource::PendingCalls, Owner::Anonymous, 1_000)
                .is_ok()
        );
    }

    #[test]
    fn the_book_counts_connections_per_owner() {
        let mut book = Book::default();
        book.open(Owner::Uid(1), 10);
        book.open(Owner::Uid(1), 11);
        book.open(Owner::Anonymous, 12);
        assert_eq!(book.count(Owner::Uid(1)), 2);
        book.close(Owner::Uid(1), 10);
        assert_eq!(book.conns(Owner::Uid(1)).collect::<Vec<_>>(), vec![11]);
        book.close(Owner::Uid(1), 11);
        assert_eq!(book.count(Owner::Uid(1)), 0);
        assert_eq!(book.count(Owner::Anonymous), 1);
    }
}
