//! The topic of an event received: one shared string per topic, so events on a topic that
//! repeats cost no allocation each, read as a `&str`.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// The topic an event was published on. Derefs to `str`, compares with `str`/`String`, and
/// converts into a `String`; clones share one allocation.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Topic(Arc<str>);

impl Topic {
    /// The topic as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Topic {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Topic {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl From<&str> for Topic {
    fn from(topic: &str) -> Topic {
        Topic(Arc::from(topic))
    }
}

impl From<String> for Topic {
    fn from(topic: String) -> Topic {
        Topic(Arc::from(topic))
    }
}

impl From<Topic> for String {
    fn from(topic: Topic) -> String {
        String::from(&*topic.0)
    }
}

impl PartialEq<str> for Topic {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Topic {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Topic {
    fn eq(&self, other: &String) -> bool {
        &*self.0 == other.as_str()
    }
}

impl PartialEq<Topic> for str {
    fn eq(&self, other: &Topic) -> bool {
        self == &*other.0
    }
}

impl PartialEq<Topic> for &str {
    fn eq(&self, other: &Topic) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<Topic> for String {
    fn eq(&self, other: &Topic) -> bool {
        self.as_str() == &*other.0
    }
}

/// Topics a subscription's recent events came on, so an event on one of them shares its string.
#[derive(Debug, Default)]
pub(crate) struct RecentTopics {
    topics: [Option<Topic>; RECENT],
    /// The slot the next new topic replaces.
    next: usize,
}

/// Topics remembered per subscription.
const RECENT: usize = 4;

impl RecentTopics {
    /// `text` as a topic, shared with the last events on it if it is a recent one.
    pub(crate) fn get(&mut self, text: &str) -> Topic {
        if let Some(topic) = self.topics.iter().flatten().find(|t| t.as_str() == text) {
            return topic.clone();
        }
        let topic = Topic::from(text);
        self.topics[self.next] = Some(topic.clone());
        self.next = (self.next + 1) % RECENT;
        topic
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recent_topic_is_shared_and_a_new_one_replaces_the_oldest() {
        let mut recent = RecentTopics::default();
        let first = recent.get("a.b");
        let again = recent.get("a.b");
        assert!(
            Arc::ptr_eq(&first.0, &again.0),
            "one string for a repeated topic"
        );
        for other in ["c", "d", "e"] {
            recent.get(other);
        }
        assert!(
            Arc::ptr_eq(&first.0, &recent.get("a.b").0),
            "still among the 4"
        );
        recent.get("f");
        assert!(
            !Arc::ptr_eq(&first.0, &recent.get("a.b").0),
            "the fifth new topic replaced it"
        );
    }

    #[test]
    fn a_topic_reads_and_compares_as_a_string() {
        let topic = Topic::from("news.today");
        assert_eq!(topic, "news.today");
        assert_eq!("news.today", topic);
        assert_eq!(topic, "news.today".to_owned());
        assert_eq!(topic.as_str(), "news.today");
        assert_eq!(topic.len(), 10, "str methods through Deref");
        assert_eq!(format!("{topic} {topic:?}"), "news.today \"news.today\"");
        assert_eq!(String::from(topic.clone()), "news.today");
        assert_eq!(
            serde_json::to_string(&topic).ok(),
            Some("\"news.today\"".to_owned())
        );
    }
}
