//! The router's side of federation: which calls go to the cluster link instead of a local
//! worker, new exported names handed to the link to claim cluster-wide, names that left, and
//! events passed on. Only runs when the broker has a cluster; the link is a participant of the
//! router like a connection, so frames to it are queued to its outbox untouched.

use plexus_proto::{ErrorCode, Frame};

use std::collections::{HashMap, HashSet};

use super::{Conn, Router, State};
use crate::cluster::{CLUSTER_OBJECT, Claim, ClusterPort, ClusterStats};
use crate::conn_id::ConnId;
use crate::observe::ConnTraffic;
use crate::outbox::Outbox;
use crate::peer::PeerInfo;
use crate::policy::Access;
use crate::quotas::Owner;
use crate::registry::Owners;

impl State {
    /// Where a call from `caller` to `object` goes when not to a local worker: `Some(Ok(link))`
    /// to another broker through the cluster link, `Some(Err)` to be refused at once (the
    /// cluster cannot be reached), `None` to stay here. A name nobody has here goes to the
    /// cluster; an exported queue group goes there too (while NATS is up) so that its calls
    /// spread over every broker's members. Calls that came from the cluster always stay.
    pub(super) fn cluster_route(
        &self,
        caller: ConnId,
        object: &str,
    ) -> Option<Result<ConnId, (ErrorCode, String)>> {
        let port = self.cluster.as_ref()?;
        if caller == port.conn {
            return None;
        }
        match self.registry.get(object).map(|entry| &entry.owners) {
            None if !port.up() => Some(Err((
                ErrorCode::Unavailable,
                format!(
                    "no object named '{object}' is registered on this broker, and the cluster '{}' cannot be reached (NATS is {}); try again later",
                    port.cluster,
                    port.stats.state().name()
                ),
            ))),
            None => Some(Ok(port.conn)),
            Some(Owners::Shared { .. }) if port.up() && port.exports_name(object) => {
                Some(Ok(port.conn))
            }
            Some(_) => None,
        }
    }

    /// Hands the registration `id` of `conn`, a name new on this broker, to the cluster link
    /// to claim in the cluster's name store: `true` when it did, and the answer waits for the
    /// link ([`Router::claim_answered`]). Names that are not exported stay local.
    pub(super) fn cluster_claim(
        &mut self,
        conn: ConnId,
        id: u64,
        name: &str,
        shared: bool,
    ) -> bool {
        let Some(port) = self.cluster.as_mut() else {
            return false;
        };
        if conn == port.conn || !port.exports_name(name) {
            return false;
        }
        let link = port.conn;
        let token = port.add_claim(Claim {
            conn,
            id,
            name: name.to_owned(),
        });
        self.send_always(link, Frame::register(token, name, shared));
        true
    }

    /// Tells the cluster link that `name`, if exported, is no longer registered here.
    pub(super) fn cluster_name_gone(&mut self, name: &str) {
        let Some(port) = &self.cluster else {
            return;
        };
        if self.registry.contains(name) || !port.exports_name(name) {
            return;
        }
        let link = port.conn;
        self.send_always(link, Frame::unregister(0, name));
    }

    /// Passes an event published here on to the cluster link, unless it came from there or its
    /// topic is not exported. When NATS is down or the link's outbox is full it is dropped and
    /// counted (`events_out_dropped`).
    pub(super) fn cluster_publish(&mut self, from: ConnId, frame: &Frame) {
        let Some(port) = &self.cluster else {
            return;
        };
        if from == port.conn || !port.exports_topic(frame.string(0)) {
            return;
        }
        let queued = port.up()
            && self
                .conns
                .get(&port.conn)
                .is_some_and(|link| link.outbox.push(frame.clone()).is_ok());
        if !queued {
            ClusterStats::bump(&port.stats.events_out_dropped);
        }
    }

    /// Answers the registration behind claim `token`: `Ok` registers it for good, `Err` takes
    /// the name back and refuses it with that error.
    fn claim_answered(&mut self, token: u64, result: Result<(), (ErrorCode, String)>) {
        let Some(claim) = self.cluster.as_mut().and_then(|p| p.take_claim(token)) else {
            return;
        };
        let holds = self
            .conns
            .get(&claim.conn)
            .is_some_and(|c| c.names.contains(&claim.name));
        match result {
            Ok(()) if holds => {
                self.ok(claim.conn, claim.id);
                self.answer_waiters_for(&claim.name);
            }
            Ok(()) => self.cluster_name_gone(&claim.name),
            Err((code, message)) => {
                if holds {
                    let _ = self.registry.unregister(&claim.name, claim.conn);
                    if let Some(c) = self.conns.get_mut(&claim.conn) {
                        c.names.remove(&claim.name);
                    }
                }
                self.fail(claim.conn, claim.id, code, &message, b"");
            }
        }
    }
}

impl Router {
    /// Attaches the cluster link as connection `port.conn` and makes it the router's way to
    /// other brokers. It is admitted with every right: what other brokers may ask of this one is
    /// decided by the cluster's export lists, not by the local policy. It holds the name
    /// [`CLUSTER_OBJECT`] (`plexus.cluster`), answered by the link. Its quotas are its own
    /// ([`Owner::Cluster`], `[quotas.cluster]`): local peers and other brokers never use up each
    /// other's.
    pub fn attach_cluster(&self, peer: PeerInfo, outbox: Outbox, port: ClusterPort) {
        let conn = port.conn;
        let mut st = self.lock();
        let mut names = HashSet::new();
        if st.registry.register(CLUSTER_OBJECT, conn, false).is_ok() {
            names.insert(CLUSTER_OBJECT.to_owned());
        }
        st.book.open(Owner::Cluster, conn);
        st.conns.insert(
            conn,
            Conn {
                outbox,
                owner: Owner::Cluster,
                peer,
                names,
                subs: HashMap::new(),
                access: Access::unrestricted(),
                traffic: ConnTraffic::new(),
                kick: None,
            },
        );
        st.cluster = Some(port);
    }

    /// Detaches the cluster link: calls waiting on other brokers are answered `worker_gone`,
    /// and nothing goes to the cluster any more.
    pub fn leave_cluster(&self, conn: ConnId) {
        let mut st = self.lock();
        st.cluster = None;
        st.detach(conn);
        st.settle();
    }

    /// The cluster's answer to claim `token` (see [`State::cluster_claim`]).
    pub fn claim_answered(&self, token: u64, result: Result<(), (ErrorCode, String)>) {
        let mut st = self.lock();
        st.claim_answered(token, result);
        st.settle();
    }
}
