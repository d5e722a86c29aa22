//! The policy file as TOML says it: `[[allow]]` and `[[deny]]` rules and `[quotas]`.

use serde::Deserialize;

use crate::quotas::Quotas;

/// A policy file: every key optional, unknown keys refused.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Rules granting rights.
    #[serde(default)]
    pub allow: Vec<RuleFile>,
    /// Rules taking rights away; they win over any allow rule.
    #[serde(default)]
    pub deny: Vec<RuleFile>,
    /// Per-user quotas.
    #[serde(default)]
    pub quotas: Quotas,
}

/// One `[[allow]]` or `[[deny]]` table.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Whom the rule is about: `*`, `uid:N`, `user:NAME`, `gid:N`, `group:NAME`, `anonymous`,
    /// `token`.
    pub who: Vec<String>,
    /// Names it may own (exclusively).
    #[serde(default)]
    pub own: Vec<String>,
    /// Queue groups it may join (names registered shared).
    #[serde(default)]
    pub join: Vec<String>,
    /// Calls, as `object.method` patterns.
    #[serde(default)]
    pub call: Vec<String>,
    /// Topics it may publish on.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Topics it may subscribe to.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// The monitor feed (`plexus.monitor.*`).
    #[serde(default)]
    pub monitor: bool,
    /// Who owns names and subscriptions in `plexus.list` and `plexus.subscriptions` (client,
    /// pid, uid, executable).
    #[serde(default)]
    pub list_details: bool,
}
