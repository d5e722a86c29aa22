//! Queue groups of event subscriptions (like NATS queue subscriptions): the subscriptions that
//! share a pattern and a group name get each matching event once between them, round-robin. The
//! groups sit in a trie of their own, so that a topic matches a group once however many members
//! it has.

use std::collections::HashMap;

use crate::subscriptions::{SubKey, Subscriptions};

/// One group: a pattern, a name and its member subscriptions.
#[derive(Debug)]
pub struct Group {
    /// The pattern its members subscribed to.
    pub pattern: String,
    /// The group's name.
    pub name: String,
    /// Member subscriptions, in join order.
    pub members: Vec<SubKey>,
    /// Where each member is in `members`, so that leaving costs the same in any group.
    index: HashMap<SubKey, usize>,
    /// Index of the member whose turn is next.
    pub next: usize,
    /// Events dropped (every member's outbox was full) since the group's last delivery.
    pub dropped: u32,
    /// Whether it receives the monitor feed.
    pub monitor: bool,
}

/// Every queue group on the bus.
#[derive(Debug, Default)]
pub struct QueueGroups {
    ids: HashMap<(String, String), u64>,
    groups: HashMap<u64, Group>,
    trie: Subscriptions<u64>,
    next_id: u64,
    members: usize,
}

impl QueueGroups {
    /// Adds subscription `key` to group `name` on a valid `pattern`, creating the group; returns
    /// the group's id.
    pub fn join(&mut self, pattern: &str, name: &str, key: SubKey, monitor: bool) -> u64 {
        let ids_key = (pattern.to_owned(), name.to_owned());
        let id = match self.ids.get(&ids_key) {
            Some(id) => *id,
            None => {
                self.next_id += 1;
                let id = self.next_id;
                self.ids.insert(ids_key, id);
                self.trie.insert(pattern, id);
                self.groups.insert(
                    id,
                    Group {
                        pattern: pattern.to_owned(),
                        name: name.to_owned(),
                        members: Vec::new(),
                        index: HashMap::new(),
                        next: 0,
                        dropped: 0,
                        monitor,
                    },
                );
                id
            }
        };
        if let Some(group) = self.groups.get_mut(&id)
            && !group.index.contains_key(&key)
        {
            group.index.insert(key, group.members.len());
            group.members.push(key);
            self.members += 1;
        }
        id
    }

    /// Removes subscription `key` from group `id`; the group goes with its last member.
    pub fn leave(&mut self, id: u64, key: SubKey) {
        let Some(group) = self.groups.get_mut(&id) else {
            return;
        };
        let Some(at) = group.index.remove(&key) else {
            return;
        };
        group.members.swap_remove(at);
        if let Some(moved) = group.members.get(at) {
            group.index.insert(*moved, at);
        }
        self.members -= 1;
        if group.members.is_empty() {
            let pattern = std::mem::take(&mut group.pattern);
            let name = std::mem::take(&mut group.name);
            self.groups.remove(&id);
            self.trie.remove(&pattern, id);
            self.ids.remove(&(pattern, name));
        } else if group.next >= group.members.len() {
            group.next = 0;
        }
    }

    /// Appends the id of every group whose pattern matches `topic` to `out`.
    pub fn matches(&self, topic: &str, out: &mut Vec<u64>) {
        self.trie.matches(topic, out);
    }

    /// Group `id`, to read.
    pub fn get(&self, id: u64) -> Option<&Group> {
        self.groups.get(&id)
    }

    /// Group `id`.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Group> {
        self.groups.get_mut(&id)
    }

    /// Number of member subscriptions over all groups.
    pub fn members(&self) -> usize {
        self.members
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_join_and_leave_and_the_last_takes_the_group() {
        let mut q = QueueGroups::default();
        let a = q.join("jobs.>", "w", (1, 1), false);
        assert_eq!(q.join("jobs.>", "w", (2, 1), false), a);
        assert_eq!(
            q.join("jobs.>", "w", (2, 1), false),
            a,
            "joining twice counts once"
        );
        let b = q.join("jobs.>", "other", (3, 1), false);
        assert_ne!(a, b);
        assert_eq!(q.members(), 3);
        let mut got = Vec::new();
        q.matches("jobs.x", &mut got);
        got.sort_unstable();
        assert_eq!(got, [a, b], "each group matches once");
        q.leave(a, (1, 1));
        assert_eq!(q.get_mut(a).map(|g| g.members.clone()), Some(vec![(2, 1)]));
        q.leave(a, (2, 1));
        q.leave(b, (3, 1));
        assert_eq!(q.members(), 0);
        assert!(q.groups.is_empty() && q.ids.is_empty() && q.trie.count() == 0);
    }
}
