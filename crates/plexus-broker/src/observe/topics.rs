//! Per-topic event counters in a table of at most [`MAX_TOPICS`] topics: publishers choose
//! topics freely, so past the limit new topics are counted together under [`OTHER_TOPICS`].

use std::collections::HashMap;

/// Most topics counted one by one.
pub const MAX_TOPICS: usize = 1024;

/// The row that counts every topic past [`MAX_TOPICS`].
pub const OTHER_TOPICS: &str = "(other topics)";

/// Counters of one topic.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TopicCounts {
    /// Events published on it.
    pub published: u64,
    /// Event frames queued to its subscribers.
    pub delivered: u64,
    /// Events dropped at full subscriber outboxes.
    pub dropped: u64,
}

/// The table of topics.
#[derive(Debug, Default)]
pub struct Topics {
    by_topic: HashMap<Box<str>, TopicCounts>,
    other: TopicCounts,
}

impl Topics {
    /// Counts an event published on `topic` that reached `delivered` subscribers and was
    /// dropped for `dropped`.
    pub fn record(&mut self, topic: &str, delivered: u64, dropped: u64) {
        let add = |counts: &mut TopicCounts| {
            counts.published += 1;
            counts.delivered += delivered;
            counts.dropped += dropped;
        };
        if let Some(counts) = self.by_topic.get_mut(topic) {
            add(counts);
        } else if self.by_topic.len() < MAX_TOPICS {
            add(self.by_topic.entry(topic.into()).or_default());
        } else {
            add(&mut self.other);
        }
    }

    /// Every topic counted, and the [`OTHER_TOPICS`] row once anything was counted there.
    pub fn iter(&self) -> impl Iterator<Item = (&str, TopicCounts)> {
        let other = (self.other.published > 0).then_some((OTHER_TOPICS, self.other));
        self.by_topic.iter().map(|(t, c)| (&**t, *c)).chain(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_past_the_limit_are_counted_together() {
        let mut topics = Topics::default();
        for i in 0..MAX_TOPICS + 10 {
            topics.record(&format!("t.{i}"), 2, 1);
        }
        topics.record("t.0", 1, 0);
        assert_eq!(topics.iter().count(), MAX_TOPICS + 1);
        let rows: HashMap<&str, TopicCounts> = topics.iter().collect();
        assert_eq!(
            rows["t.0"],
            TopicCounts {
                published: 2,
                delivered: 3,
                dropped: 1
            }
        );
        assert_eq!(rows[OTHER_TOPICS].published, 10);
    }
}
