//! The router's table of contracts in force: by registered name, by topic, and the operator's
//! pinned ones; it decides whether a registration's contract is accepted and publishes a new
//! snapshot for the readers when the contracts change.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use serde_json::value::RawValue;

use super::compile::{Compiled, MethodChecks, TopicCheck, compile};
use super::diff::first_difference;
use super::document::Document;
use super::pinned::Pinned;
use super::{Published, Snapshot};

/// A contract in force: its document and its compiled checks.
#[derive(Debug)]
pub struct Contract {
    doc: Document,
    compiled: Compiled,
}

/// What a registration's contract comes to.
#[derive(Debug)]
pub enum Verdict {
    /// The name has no contract (any it had goes).
    None,
    /// The name has this contract.
    Contract(Arc<Contract>),
}

/// Who holds a topic's contract.
#[derive(Debug)]
struct TopicEntry {
    check: Arc<TopicCheck>,
    schema: Value,
    /// Registered names whose contracts declare it.
    owners: Vec<String>,
    /// Pinned by the operator: in force whether or not a name declaring it is registered.
    pinned: bool,
}

/// Every contract in force.
#[derive(Debug)]
pub struct Table {
    published: Arc<Published>,
    names: HashMap<String, Arc<Contract>>,
    topics: HashMap<String, TopicEntry>,
    pinned: HashMap<String, (Arc<Contract>, Box<RawValue>)>,
    max_depth: usize,
    check_results: bool,
}

impl Table {
    /// An empty table; contracts nest at most `max_depth` deep; results are checked when
    /// `check_results`.
    pub fn new(max_depth: usize, check_results: bool) -> Table {
        Table {
            published: Arc::default(),
            names: HashMap::new(),
            topics: HashMap::new(),
            pinned: HashMap::new(),
            max_depth,
            check_results,
        }
    }

    /// The snapshot readers check against.
    pub fn published(&self) -> &Arc<Published> {
        &self.published
    }

    /// Puts the operator's pinned contracts in force: their topics at once, their methods when
    /// their names are registered.
    pub fn pin(&mut self, pinned: Vec<Pinned>) {
        for p in pinned {
            let contract = Arc::new(Contract {
                doc: p.doc,
                compiled: p.compiled,
            });
            for (topic, check) in &contract.compiled.topics {
                let schema = contract
                    .doc
                    .topic_schema(topic)
                    .cloned()
                    .unwrap_or_default();
                self.topics.insert(
                    topic.clone(),
                    TopicEntry {
                        check: check.clone(),
                        schema,
                        owners: Vec::new(),
                        pinned: true,
                    },
                );
            }
            self.pinned.insert(p.name, (contract, p.text));
        }
        self.publish();
    }

    /// The pinned contract's text of `name`, shown by `plexus.introspect` when its worker
    /// declared nothing.
    pub fn pinned_description(&self, name: &str) -> Option<&RawValue> {
        self.pinned.get(name).map(|(_, text)| &**text)
    }

    /// What registering `name` with `description` comes to; `alone` when no other connection
    /// holds the name (a queue group's members must agree). `Err` says why the contract is
    /// refused: it is malformed, too deep, does not compile, differs from the pinned one or the
    /// group's (naming the first difference), or gives a topic another schema than it has.
    pub fn decide(
        &self,
        name: &str,
        description: Option<&RawValue>,
        alone: bool,
    ) -> Result<Verdict, String> {
        let doc = match description {
            Some(text) => Document::parse(text.get(), self.max_depth)?,
            None => None,
        };
        let fixed = match self.pinned.get(name) {
            Some((pinned, _)) => Some((pinned, "the contract pinned for it by the operator")),
            None if !alone => self
                .names
                .get(name)
                .map(|group| (group, "the contract of its queue group")),
            None => None,
        };
        if let Some((fixed, whose)) = fixed {
            if let Some(doc) = &doc
                && let Some(diff) =
                    first_difference(&fixed.doc.checked_parts(), &doc.checked_parts())
            {
                return Err(format!(
                    "the contract offered for '{name}' differs from {whose}: {diff}"
                ));
            }
            return Ok(Verdict::Contract(fixed.clone()));
        }
        let Some(doc) = doc else {
            return Ok(Verdict::None);
        };
        for topic in &doc.topics {
            if let Some(held) = self.topics.get(topic)
                && (held.pinned || held.owners.iter().any(|o| o != name))
                && let Some(offered) = doc.topic_schema(topic)
                && let Some(diff) = first_difference(&held.schema, offered)
            {
                let holder = match held.owners.first() {
                    Some(owner) if !held.pinned => format!("the contract of '{owner}'"),
                    _ => "the operator's pinned contract".to_owned(),
                };
                return Err(format!(
                    "topic '{topic}' already has a payload schema from {holder}, and this one differs: {diff}"
                ));
            }
        }
        let compiled = compile(name, &doc, |other| {
            self.names
                .get(other)
                .or_else(|| self.pinned.get(other).map(|(c, _)| c))
                .map(|c| &c.doc.value)
        })?;
        Ok(Verdict::Contract(Arc::new(Contract { doc, compiled })))
    }

    /// Puts the verdict on `name` in force.
    pub fn install(&mut self, name: &str, verdict: Verdict) {
        match verdict {
            Verdict::None => self.remove(name),
            Verdict::Contract(contract) => {
                if self
                    .names
                    .get(name)
                    .is_some_and(|held| Arc::ptr_eq(held, &contract))
                {
                    return;
                }
                self.leave_topics(name);
                for (topic, check) in &contract.compiled.topics {
                    let entry = self
                        .topics
                        .entry(topic.clone())
                        .or_insert_with(|| TopicEntry {
                            check: check.clone(),
                            schema: contract
                                .doc
                                .topic_schema(topic)
                                .cloned()
                                .unwrap_or_default(),
                            owners: Vec::new(),
                            pinned: false,
                        });
                    entry.owners.push(name.to_owned());
                }
                self.names.insert(name.to_owned(), contract);
                self.publish();
            }
        }
    }

    /// `name` is no longer registered: its contract goes (a pinned one stays pinned).
    pub fn remove(&mut self, name: &str) {
        if self.names.remove(name).is_some() {
            self.leave_topics(name);
            self.publish();
        }
    }

    /// The result check of `object.method`, when results are checked and it has one.
    pub fn result_check(&self, object: &str, method: &str) -> Option<Arc<MethodChecks>> {
        if self.names.is_empty() || !self.check_results {
            return None;
        }
        let checks = self.names.get(object)?.compiled.methods.get(method)?;
        checks.result.is_some().then(|| checks.clone())
    }

    /// Takes `name` off the owners of the topics its contract declares.
    fn leave_topics(&mut self, name: &str) {
        self.topics.retain(|_, entry| {
            entry.owners.retain(|o| o != name);
            entry.pinned || !entry.owners.is_empty()
        });
    }

    /// Publishes a snapshot of the contracts in force.
    fn publish(&self) {
        let objects = self
            .names
            .iter()
            .filter(|(_, c)| !c.compiled.methods.is_empty())
            .map(|(name, c)| (name.clone(), c.compiled.methods.clone()))
            .collect();
        let topics = self
            .topics
            .iter()
            .map(|(topic, entry)| (topic.clone(), entry.check.clone()))
            .collect();
        self.published.publish(Snapshot { objects, topics });
    }
}
