//! Access control: the policy (who may own, join, call, publish, subscribe, watch the monitor
//! feed and see `list` details), read from TOML once and compiled at connect into each
//! connection's [`Access`]; the token TCP peers present.
//!
//! What no allow rule grants is denied, and a matching deny rule wins over any allow rule.
//! Without a policy every connection may do everything (the socket's 0600 mode keeps other
//! users out).

mod access;
mod accounts;
pub mod admit;
mod file;
mod pattern;
pub mod token;

use std::path::Path;

use plexus_proto::validate_pattern;

pub use access::{Access, Action, Capabilities, Denied};
pub use accounts::Accounts;
use file::{PolicyFile, RuleFile};

use crate::peer::PeerInfo;
use crate::quotas::Quotas;

/// A policy, read and checked.
#[derive(Debug)]
pub struct Policy {
    /// Where it was read from, for `plexus doctor`.
    pub source: String,
    rules: Vec<Rule>,
    /// Per-user quotas.
    pub quotas: Quotas,
}

/// Whether a rule grants or takes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// An `[[allow]]` rule.
    Allow,
    /// A `[[deny]]` rule.
    Deny,
}

impl Effect {
    fn name(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

/// One rule, its `who` resolved.
#[derive(Debug)]
struct Rule {
    effect: Effect,
    /// Its index among the rules of its effect, to name it: `deny[2]`.
    index: usize,
    who: Vec<Who>,
    /// Patterns per [`Action`], in [`Action::ALL`] order.
    patterns: [Vec<String>; 5],
    monitor: bool,
    list_details: bool,
}

/// A `who` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// `*`: every peer.
    Everyone,
    /// `uid:N` or `user:NAME`.
    Uid(u32),
    /// `gid:N` or `group:NAME`: the primary or a supplementary group.
    Gid(u32),
    /// A TCP (or dialect) peer that presented no token.
    Anonymous,
    /// A TCP peer that presented the broker's token.
    Token,
}

impl Who {
    fn parse(text: &str, accounts: Accounts<'_>) -> Result<Who, String> {
        let number = |n: &str| {
            n.parse::<u32>()
                .map_err(|_| format!("{n:?} is not a number"))
        };
        match text.split_once(':') {
            _ if text == "*" => Ok(Who::Everyone),
            _ if text == "anonymous" => Ok(Who::Anonymous),
            _ if text == "token" => Ok(Who::Token),
            Some(("uid", n)) => number(n).map(Who::Uid),
            Some(("gid", n)) => number(n).map(Who::Gid),
            Some(("user", name)) => accounts
                .uid_of(name)
                .map(Who::Uid)
                .ok_or_else(|| format!("no user {name:?} in {}", accounts.passwd.display())),
            Some(("group", name)) => accounts
                .gid_of(name)
                .map(Who::Gid)
                .ok_or_else(|| format!("no group {name:?} in {}", accounts.group.display())),
            _ => Err(format!(
                "{text:?} is not one of *, uid:N, user:NAME, gid:N, group:NAME, anonymous, token"
            )),
        }
    }

    fn matches(self, peer: &PeerInfo) -> bool {
        match self {
            Who::Everyone => true,
            Who::Uid(uid) => peer.uid == Some(uid),
            Who::Gid(gid) => peer.uid.is_some() && peer.in_group(gid),
            Who::Anonymous => peer.uid.is_none() && !peer.token,
            Who::Token => peer.uid.is_none() && peer.token,
        }
    }
}

impl Policy {
    /// Reads the policy in `path`, resolving user and group names with `accounts`.
    pub fn load(path: &Path, accounts: Accounts<'_>) -> Result<Policy, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read policy file {}: {e}", path.display()))?;
        Policy::parse(&text, &path.display().to_string(), accounts)
            .map_err(|e| format!("policy file {}: {e}", path.display()))
    }

    /// Parses a policy's TOML text; `source` names it.
    pub fn parse(text: &str, source: &str, accounts: Accounts<'_>) -> Result<Policy, String> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut rules = Vec::new();
        for (effect, list) in [(Effect::Allow, file.allow), (Effect::Deny, file.deny)] {
            for (index, rule) in list.into_iter().enumerate() {
                rules.push(Rule::check(effect, index, rule, accounts)?);
            }
        }
        Ok(Policy {
            source: source.to_owned(),
            rules,
            quotas: file.quotas,
        })
    }

    /// Whether some allow rule grants anonymous peers anything: only then may a dialect's TCP
    /// listener (whose peers cannot present a token) listen beyond loopback.
    pub fn grants_anonymous(&self) -> bool {
        self.rules.iter().any(|r| {
            r.effect == Effect::Allow
                && r.who
                    .iter()
                    .any(|w| matches!(w, Who::Anonymous | Who::Everyone))
                && (r.monitor || r.list_details || r.patterns.iter().any(|p| !p.is_empty()))
        })
    }

    /// Whether some rule names anonymous peers, or every peer: without one, an anonymous peer of
    /// a listener that has a token is refused at once.
    pub fn mentions_anonymous(&self) -> bool {
        self.rules.iter().any(|r| {
            r.who
                .iter()
                .any(|w| matches!(w, Who::Anonymous | Who::Everyone))
        })
    }

    /// The capabilities of `peer`: the rules whose `who` matches it, flattened.
    pub fn compile(&self, peer: &PeerInfo, accounts: Accounts<'_>) -> Capabilities {
        let mut caps = Capabilities::new(subject(peer, accounts));
        for rule in self
            .rules
            .iter()
            .filter(|r| r.who.iter().any(|w| w.matches(peer)))
        {
            let prefix = format!("{}[{}]", rule.effect.name(), rule.index);
            for (action, patterns) in Action::ALL.iter().zip(&rule.patterns) {
                for (i, pattern) in patterns.iter().enumerate() {
                    let name = format!("{prefix}.{}[{i}]", action.name());
                    caps.add(*action, rule.effect, pattern, name);
                }
            }
            if rule.monitor {
                caps.add_monitor(rule.effect, format!("{prefix}.monitor"));
            }
            if rule.list_details {
                caps.add_list_details(rule.effect, format!("{prefix}.list_details"));
            }
        }
        caps
    }
}

impl Rule {
    fn check(
        effect: Effect,
        index: usize,
        rule: RuleFile,
        accounts: Accounts<'_>,
    ) -> Result<Rule, String> {
        let name = format!("{}[{index}]", effect.name());
        if rule.who.is_empty() {
            return Err(format!(
                "{name}: `who` is empty; list whom the rule is about"
            ));
        }
        let who = rule
            .who
            .iter()
            .map(|w| Who::parse(w, accounts).map_err(|e| format!("{name}.who: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let patterns = [rule.own, rule.join, rule.call, rule.publish, rule.subscribe];
        for (action, list) in Action::ALL.iter().zip(&patterns) {
            for (i, pattern) in list.iter().enumerate() {
                validate_pattern(pattern)
                    .map_err(|e| format!("{name}.{}[{i}] {pattern:?}: {e}", action.name()))?;
            }
        }
        Ok(Rule {
            effect,
            index,
            who,
            patterns,
            monitor: rule.monitor,
            list_details: rule.list_details,
        })
    }
}

/// How messages name a peer: `uid 1001 (alice)`, `anonymous peer 10.0.0.2:5000`.
fn subject(peer: &PeerInfo, accounts: Accounts<'_>) -> String {
    match (peer.uid, &peer.addr) {
        (Some(uid), _) => match accounts.user_name(uid) {
            Some(name) => format!("uid {uid} ({name})"),
            None => format!("uid {uid}"),
        },
        (None, addr) => {
            let kind = if peer.token { "token" } else { "anonymous" };
            match addr {
                Some(addr) => format!("{kind} peer {addr}"),
                None => format!("{kind} peer"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
