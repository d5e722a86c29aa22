//! Access control in the router: admitting a peer with its compiled rights, the per-user quotas,
//! and answering a refused request `permission_denied` (counted and logged).

use plexus_proto::ErrorCode;
use tracing::info;

use super::monitor::CallName;
use super::{Kick, Router, State};
use crate::conn_id::ConnId;
use crate::peer::PeerInfo;
use crate::policy::admit::{admit, check_token};
use crate::policy::{Access, Denied};
use crate::quotas::{Owner, Resource};

impl Router {
    /// The rights of a peer about to be attached (compiled outside the lock), or why it is
    /// refused.
    pub(super) fn admit(&self, peer: &PeerInfo) -> Result<Access, Kick> {
        admit(
            self.config.policy.as_deref(),
            self.config.token.as_ref(),
            peer,
        )
        .map_err(|Denied(message)| {
            info!(addr = ?peer.addr, uid = ?peer.uid, %message, "connection refused by access control");
            self.lock().stats.access_denied += 1;
            Kick {
                code: ErrorCode::PermissionDenied,
                message,
            }
        })
    }

    /// Checks the token a `hello` carried (empty: none): whether the peer presented the broker's
    /// token, or the error to refuse it with when the token is wrong.
    pub fn check_token(&self, presented: &[u8]) -> Result<bool, Kick> {
        check_token(self.config.token.as_ref(), presented).map_err(|Denied(message)| {
            info!(%message, "connection refused: wrong token");
            self.lock().stats.access_denied += 1;
            Kick {
                code: ErrorCode::PermissionDenied,
                message,
            }
        })
    }
}

impl State {
    /// Whether `owner` may open one more connection under its quota.
    pub(super) fn room_for_connection(&mut self, owner: Owner) -> Result<(), Kick> {
        let used = self.book.count(owner);
        self.quota(owner, Resource::Connections, used)
            .map_err(|message| Kick {
                code: ErrorCode::Overloaded,
                message,
            })
    }

    /// Whether `conn`'s owner may hold one more of `resource` under its quota: `Err` names the
    /// quota. Costs nothing without one; with one, a look at each of the owner's connections.
    pub(super) fn room_under_quota(
        &mut self,
        conn: ConnId,
        resource: Resource,
    ) -> Result<(), String> {
        let limited = self
            .config
            .policy
            .as_ref()
            .is_some_and(|p| p.quotas.limits(resource));
        let Some(owner) = self.conns.get(&conn).map(|c| c.owner).filter(|_| limited) else {
            return Ok(());
        };
        let used: usize = self
            .book
            .conns(owner)
            .map(|c| match resource {
                Resource::Connections => 1,
                Resource::Names => self.conns.get(&c).map_or(0, |c| c.names.len()),
                Resource::Subscriptions => self.conns.get(&c).map_or(0, |c| c.subs.len()),
                Resource::PendingCalls => self.pending.open_for(c),
            })
            .sum();
        self.quota(owner, resource, used)
    }

    /// Checks `used` against `owner`'s quota on `resource`; a refusal is counted and logged.
    fn quota(&mut self, owner: Owner, resource: Resource, used: usize) -> Result<(), String> {
        let Some(policy) = &self.config.policy else {
            return Ok(());
        };
        policy
            .quotas
            .room(resource, owner, used)
            .inspect_err(|message| {
                self.stats.quota_exceeded += 1;
                info!(%owner, quota = resource.key(), %message, "quota reached");
            })
    }

    /// `conn`'s rights when a policy restricts them; without a policy `None` at the cost of one
    /// branch, so the hot path does no lookup.
    pub(super) fn access(&self, conn: ConnId) -> Option<&Access> {
        self.config.policy.as_ref()?;
        self.conns.get(&conn).map(|c| &c.access)
    }

    /// Answers request `id` of `conn` `permission_denied` with the rule that refused it, counts
    /// and logs it; `call` names the call when the request was one.
    pub(super) fn refuse(&mut self, conn: ConnId, id: u64, call: CallName<'_>, denied: Denied) {
        self.stats.access_denied += 1;
        info!(conn, message = %denied.0, "permission denied");
        self.fail_call(conn, id, call, ErrorCode::PermissionDenied, &denied.0, b"");
    }
}
