//! One connection's compiled rights: for each action the allow and deny patterns that apply to
//! its peer, checked without parsing or allocating unless the answer is no.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Effect;
use super::pattern::{covers, intersects, matches};

/// What a peer asks to do with a name, topic or call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Register a name exclusively.
    Own,
    /// Register a name as a queue group member.
    Join,
    /// Call `object.method`.
    Call,
    /// Publish on a topic.
    Publish,
    /// Subscribe to a pattern.
    Subscribe,
}

impl Action {
    /// Every action, in the order of a rule's patterns.
    pub const ALL: [Action; 5] = [
        Action::Own,
        Action::Join,
        Action::Call,
        Action::Publish,
        Action::Subscribe,
    ];

    /// Its key in a policy rule.
    pub fn name(self) -> &'static str {
        match self {
            Action::Own => "own",
            Action::Join => "join",
            Action::Call => "call",
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
        }
    }
}

/// A refused operation: the message names the rule, or says none allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

/// A pattern and the rule it comes from (`deny[0].call[2]`).
#[derive(Debug)]
struct Grant {
    pattern: Box<str>,
    rule: Box<str>,
}

/// The allow and deny patterns of one action.
#[derive(Debug, Default)]
struct Grants {
    allow: Vec<Grant>,
    deny: Vec<Grant>,
}

/// A yes/no right (the monitor feed, `list` details): the first rule that grants it and the
/// first that denies it.
#[derive(Debug, Default)]
struct Flag {
    allow: Option<Box<str>>,
    deny: Option<Box<str>>,
}

/// The rights of one peer under the policy.
#[derive(Debug)]
pub struct Capabilities {
    /// The peer, as messages name it: `uid 1001 (alice)`.
    pub subject: String,
    grants: [Grants; 5],
    monitor: Flag,
    list_details: Flag,
}

impl Capabilities {
    /// No rights yet, for `subject`.
    pub(super) fn new(subject: String) -> Capabilities {
        Capabilities {
            subject,
            grants: Default::default(),
            monitor: Flag::default(),
            list_details: Flag::default(),
        }
    }

    pub(super) fn add(&mut self, action: Action, effect: Effect, pattern: &str, rule: String) {
        let grant = Grant {
            pattern: pattern.into(),
            rule: rule.into(),
        };
        let grants = &mut self.grants[action as usize];
        match effect {
            Effect::Allow => grants.allow.push(grant),
            Effect::Deny => grants.deny.push(grant),
        }
    }

    pub(super) fn add_monitor(&mut self, effect: Effect, rule: String) {
        self.monitor.set(effect, rule);
    }

    pub(super) fn add_list_details(&mut self, effect: Effect, rule: String) {
        self.list_details.set(effect, rule);
    }

    /// Checks `what` against the action's deny patterns (`hits_deny`) then its allow patterns
    /// (`fits_allow`); `describe` says what was asked, for the message.
    fn check(
        &self,
        action: Action,
        hits_deny: impl Fn(&str) -> bool,
        fits_allow: impl Fn(&str) -> bool,
        describe: impl FnOnce() -> String,
    ) -> Result<(), Denied> {
        let grants = &self.grants[action as usize];
        if let Some(g) = grants.deny.iter().find(|g| hits_deny(&g.pattern)) {
            return Err(Denied(format!(
                "{} denied by policy rule {} {:?} for {}",
                describe(),
                g.rule,
                g.pattern,
                self.subject
            )));
        }
        if grants.allow.iter().any(|g| fits_allow(&g.pattern)) {
            return Ok(());
        }
        Err(Denied(format!(
            "{} not allowed: no policy rule grants it to {} (allow.{} patterns that apply: {})",
            describe(),
            self.subject,
            action.name(),
            list(&grants.allow)
        )))
    }

    /// The capabilities as JSON, for `plexus.whoami`.
    pub fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        for action in Action::ALL {
            let grants = &self.grants[action as usize];
            let side = |list: &[Grant]| -> Vec<Value> {
                list.iter()
                    .map(|g| json!({ "pattern": &*g.pattern, "rule": &*g.rule }))
                    .collect()
            };
            out.insert(
                action.name().into(),
                json!({ "allow": side(&grants.allow), "deny": side(&grants.deny) }),
            );
        }
        out.insert("monitor".into(), self.monitor.to_json());
        out.insert("list_details".into(), self.list_details.to_json());
        Value::Object(out)
    }
}

impl Flag {
    fn set(&mut self, effect: Effect, rule: String) {
        let slot = match effect {
            Effect::Allow => &mut self.allow,
            Effect::Deny => &mut self.deny,
        };
        slot.get_or_insert_with(|| rule.into());
    }

    fn check(&self, what: &str, key: &str, subject: &str) -> Result<(), Denied> {
        match (&self.deny, &self.allow) {
            (Some(rule), _) => Err(Denied(format!(
                "{what} denied by policy rule {rule} for {subject}"
            ))),
            (None, Some(_)) => Ok(()),
            (None, None) => Err(Denied(format!(
                "{what} not allowed: no policy rule sets {key} = true for {subject}"
            ))),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "granted": self.allow.is_some() && self.deny.is_none(),
            "allow": self.allow.as_deref(),
            "deny": self.deny.as_deref(),
        })
    }
}

/// The patterns of `grants`, quoted, for a message (at most 8).
fn list(grants: &[Grant]) -> String {
    if grants.is_empty() {
        return "none".into();
    }
    let mut out: Vec<String> = grants
        .iter()
        .take(8)
        .map(|g| format!("{:?}", g.pattern))
        .collect();
    if grants.len() > 8 {
        out.push(format!("and {} more", grants.len() - 8));
    }
    out.join(", ")
}

/// A connection's rights: everything without a policy, else its compiled [`Capabilities`].
#[derive(Debug, Clone, Default)]
pub struct Access(Option<Arc<Capabilities>>);

impl Access {
    /// Every right: the broker has no policy.
    pub fn unrestricted() -> Access {
        Access(None)
    }

    /// The rights `caps` lists.
    pub fn restricted(caps: Capabilities) -> Access {
        Access(Some(Arc::new(caps)))
    }

    /// The compiled rights, when a policy applies.
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.0.as_deref()
    }

    /// May the peer register `name` (`Own` exclusively, `Join` a queue group)?
    pub fn name(&self, action: Action, name: &str) -> Result<(), Denied> {
        let Some(caps) = &self.0 else {
            return Ok(());
        };
        let hit = |p: &str| matches(p, name.split('.'));
        caps.check(action, hit, hit, || format!("{} '{name}'", action.name()))
    }

    /// May the peer call `method` on `object`? Calls to the broker's own object are allowed
    /// unless a deny rule names them.
    pub fn call(&self, object: &str, method: &str, broker_object: bool) -> Result<(), Denied> {
        let Some(caps) = &self.0 else {
            return Ok(());
        };
        let hit = |p: &str| matches(p, object.split('.').chain(std::iter::once(method)));
        let fits = |p: &str| broker_object || hit(p);
        caps.check(Action::Call, hit, fits, || {
            format!("call '{object}.{method}'")
        })
    }

    /// May the peer publish on `topic`?
    pub fn publish(&self, topic: &str) -> Result<(), Denied> {
        let Some(caps) = &self.0 else {
            return Ok(());
        };
        let hit = |p: &str| matches(p, topic.split('.'));
        caps.check(Action::Publish, hit, hit, || {
            format!("publish on '{topic}'")
        })
    }

    /// May the peer subscribe to `pattern`? Allowed when an allow pattern covers everything it
    /// matches; denied when a deny pattern shares any topic with it.
    pub fn subscribe(&self, pattern: &str) -> Result<(), Denied> {
        let Some(caps) = &self.0 else {
            return Ok(());
        };
        caps.check(
            Action::Subscribe,
            |p| intersects(p, pattern),
            |p| covers(p, pattern),
            || format!("subscribe to '{pattern}'"),
        )
    }

    /// May the peer watch the monitor feed?
    pub fn monitor(&self) -> Result<(), Denied> {
        match &self.0 {
            None => Ok(()),
            Some(caps) => caps.monitor.check(
                "watching the monitor feed (plexus.monitor.*)",
                "monitor",
                &caps.subject,
            ),
        }
    }

    /// May the peer see who owns names and subscriptions (client, pid, uid, executable)?
    pub fn list_details(&self) -> bool {
        self.0.as_ref().is_none_or(|caps| {
            caps.list_details
                .check("", "list_details", &caps.subject)
                .is_ok()
        })
    }
}
