//! Subscriptions: a trie over dot-separated pattern segments with `*` and `>` nodes, so that
//! matching a topic costs its depth, not the number of subscriptions. The subscriptions ending
//! at a node are a set, so adding or removing one costs the same however many connections share
//! the pattern.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use crate::conn_id::ConnId;

/// One subscription: the connection and its subscription id.
pub type SubKey = (ConnId, u64);

#[derive(Debug)]
struct Node<K> {
    children: HashMap<String, Node<K>>,
    star: Option<Box<Node<K>>>,
    /// Subscriptions whose pattern ends here.
    here: HashSet<K>,
    /// Subscriptions whose pattern ends with `>` after this node.
    rest: HashSet<K>,
}

impl<K> Default for Node<K> {
    fn default() -> Self {
        Node {
            children: HashMap::new(),
            star: None,
            here: HashSet::new(),
            rest: HashSet::new(),
        }
    }
}

impl<K: Copy + Eq + Hash> Node<K> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.star.is_none()
            && self.here.is_empty()
            && self.rest.is_empty()
    }

    fn collect(&self, segments: &[&str], out: &mut Vec<K>) {
        let Some((first, tail)) = segments.split_first() else {
            out.extend(&self.here);
            return;
        };
        out.extend(&self.rest);
        if let Some(child) = self.children.get(*first) {
            child.collect(tail, out);
        }
        if let Some(star) = &self.star {
            star.collect(tail, out);
        }
    }

    /// Removes `key` from the node the segments lead to. Returns whether it was there, and whether
    /// this node is now empty.
    fn remove(&mut self, segments: &[&str], key: K) -> (bool, bool) {
        let removed = match segments.split_first() {
            None => self.here.remove(&key),
            Some((&">", [])) => self.rest.remove(&key),
            Some((&"*", tail)) => match &mut self.star {
                Some(star) => {
                    let (removed, empty) = star.remove(tail, key);
                    if empty {
                        self.star = None;
                    }
                    removed
                }
                None => false,
            },
            Some((seg, tail)) => match self.children.get_mut(*seg) {
                Some(child) => {
                    let (removed, empty) = child.remove(tail, key);
                    if empty {
                        self.children.remove(*seg);
                    }
                    removed
                }
                None => false,
            },
        };
        (removed, self.is_empty())
    }
}

/// Every subscription on the bus, each known by a key: a connection's subscription
/// ([`SubKey`], the default) or a queue group's id.
#[derive(Debug)]
pub struct Subscriptions<K = SubKey> {
    root: Node<K>,
    count: usize,
}

impl<K> Default for Subscriptions<K> {
    fn default() -> Self {
        Subscriptions {
            root: Node::default(),
            count: 0,
        }
    }
}

impl<K: Copy + Eq + Hash> Subscriptions<K> {
    /// Adds a subscription to a valid pattern.
    pub fn insert(&mut self, pattern: &str, key: K) {
        let mut node = &mut self.root;
        let segments: Vec<&str> = pattern.split('.').collect();
        for (i, seg) in segments.iter().enumerate() {
            if *seg == ">" && i == segments.len() - 1 {
                self.count += usize::from(node.rest.insert(key));
                return;
            }
            node = if *seg == "*" {
                node.star.get_or_insert_with(Box::default)
            } else {
                node.children.entry((*seg).to_owned()).or_default()
            };
        }
        self.count += usize::from(node.here.insert(key));
    }

    /// Removes a subscription added with `pattern`.
    pub fn remove(&mut self, pattern: &str, key: K) {
        let segments: Vec<&str> = pattern.split('.').collect();
        let (removed, _) = self.root.remove(&segments, key);
        self.count -= usize::from(removed);
    }

    /// Appends every subscription matching `topic` to `out`.
    pub fn matches(&self, topic: &str, out: &mut Vec<K>) {
        let segments: Vec<&str> = topic.split('.').collect();
        self.root.collect(&segments, out);
    }

    /// Number of subscriptions.
    pub fn count(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_proto::topic_matches;

    #[test]
    fn trie_agrees_with_topic_matches() {
        let patterns = [
            "a", "a.b", "a.*", "a.>", "*.b", ">", "*.*.c", "a.b.>", "x.y",
        ];
        let topics = ["a", "a.b", "a.c", "a.b.c", "b.b", "x.y", "q.r.c", "x"];
        let mut subs = Subscriptions::<SubKey>::default();
        for (i, p) in patterns.iter().enumerate() {
            subs.insert(p, (1, i as u64));
        }
        for t in topics {
            let mut got = Vec::new();
            subs.matches(t, &mut got);
            got.sort();
            let want: Vec<SubKey> = patterns
                .iter()
                .enumerate()
                .filter(|(_, p)| topic_matches(p, t))
                .map(|(i, _)| (1, i as u64))
                .collect();
            assert_eq!(got, want, "topic {t}");
        }
        for (i, p) in patterns.iter().enumerate() {
            subs.remove(p, (1, i as u64));
        }
        assert_eq!(subs.count(), 0);
        assert!(subs.root.is_empty(), "empty nodes are pruned");
        subs.remove("a.b", (1, 1));
        assert_eq!(subs.count(), 0, "removing what is not there counts nothing");
    }

    #[test]
    fn many_connections_on_one_pattern_are_added_and_removed_one_by_one() {
        let mut subs = Subscriptions::<SubKey>::default();
        for conn in 0..10_000 {
            subs.insert(">", (conn, 1));
            subs.insert("a.*", (conn, 2));
        }
        assert_eq!(subs.count(), 20_000);
        let mut got = Vec::new();
        subs.matches("a.b", &mut got);
        assert_eq!(got.len(), 20_000);
        for conn in (0..10_000).rev() {
            subs.remove(">", (conn, 1));
            subs.remove("a.*", (conn, 2));
        }
        assert_eq!(subs.count(), 0);
        assert!(subs.root.is_empty());
    }
}
