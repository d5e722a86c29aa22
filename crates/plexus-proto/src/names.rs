//! Rules for object names, topics and subscription patterns, and pattern matching.

/// Why a name, topic or pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Empty string.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// Longer than 255 bytes.
    #[error("{what} is {len} bytes long; at most 255 are allowed")]
    TooLong {
        /// Which kind of string.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// A character outside `A-Z a-z 0-9 _ - . :` (and `*`, `>` in patterns).
    #[error("{what} {text:?} contains {ch:?}; allowed are letters, digits, '_', '-', ':' and '.'")]
    BadChar {
        /// Which kind of string.
        what: &'static str,
        /// The string.
        text: String,
        /// The first bad character.
        ch: char,
    },
    /// Two dots in a row, or a dot at either end.
    #[error("{what} {text:?} has an empty segment")]
    EmptySegment {
        /// Which kind of string.
        what: &'static str,
        /// The string.
        text: String,
    },
    /// `*` or `>` used other than as a whole segment, or `>` not last, or a wildcard in a topic.
    #[error("{what} {text:?}: '*' must be a whole segment and '>' only the last segment")]
    BadWildcard {
        /// Which kind of string.
        what: &'static str,
        /// The string.
        text: String,
    },
}

const MAX_LEN: usize = 255;

fn plain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':')
}

fn check(what: &'static str, text: &str, wildcards: bool) -> Result<(), NameError> {
    if text.is_empty() {
        return Err(NameError::Empty(what));
    }
    if text.len() > MAX_LEN {
        return Err(NameError::TooLong {
            what,
            len: text.len(),
        });
    }
    // No Vec of the segments: the broker checks the topic of every publish.
    let mut segments = text.split('.').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if seg.is_empty() {
            return Err(NameError::EmptySegment {
                what,
                text: text.to_owned(),
            });
        }
        if seg == "*" || (seg == ">" && last) {
            if wildcards {
                continue;
            }
            return Err(NameError::BadWildcard {
                what,
                text: text.to_owned(),
            });
        }
        if let Some(ch) = seg.chars().find(|c| !plain_char(*c)) {
            if ch == '*' || ch == '>' {
                return Err(NameError::BadWildcard {
                    what,
                    text: text.to_owned(),
                });
            }
            return Err(NameError::BadChar {
                what,
                text: text.to_owned(),
                ch,
            });
        }
    }
    Ok(())
}

/// An object name: 1–255 bytes of `A-Z a-z 0-9 _ - :` in dot-separated segments.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    check("object name", name, false)
}

/// A topic to publish on: like a name, no wildcards.
pub fn validate_topic(topic: &str) -> Result<(), NameError> {
    check("topic", topic, false)
}

/// A subscription pattern: a topic whose segments may be `*` (one segment) or, last, `>` (one
/// or more segments).
pub fn validate_pattern(pattern: &str) -> Result<(), NameError> {
    check("pattern", pattern, true)
}

/// Whether `topic` matches `pattern` (both assumed valid).
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    let mut topic_segs = topic.split('.');
    for p in pattern.split('.') {
        if p == ">" {
            return topic_segs.next().is_some();
        }
        match topic_segs.next() {
            Some(t) if p == "*" || p == t => {}
            _ => return false,
        }
    }
    topic_segs.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_topics() {
        assert!(validate_name("math").is_ok());
        assert!(validate_name("org.example.math-2:v1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a..b").is_err());
        assert!(validate_name(".a").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name("a.*").is_err());
        assert!(validate_name(&"x".repeat(256)).is_err());
        assert!(validate_topic("sensor.temp").is_ok());
        assert!(validate_topic("sensor.>").is_err());
        assert!(validate_pattern("sensor.*.temp").is_ok());
        assert!(validate_pattern("sensor.>").is_ok());
        assert!(validate_pattern(">").is_ok());
        assert!(validate_pattern("sensor.>.x").is_err());
        assert!(validate_pattern("sen*").is_err());
    }

    #[test]
    fn matching() {
        assert!(topic_matches("a.b", "a.b"));
        assert!(!topic_matches("a.b", "a.b.c"));
        assert!(!topic_matches("a.b.c", "a.b"));
        assert!(topic_matches("a.*", "a.b"));
        assert!(!topic_matches("a.*", "a.b.c"));
        assert!(topic_matches("a.>", "a.b.c"));
        assert!(!topic_matches("a.>", "a"));
        assert!(topic_matches(">", "x"));
        assert!(topic_matches("*.b.>", "a.b.c.d"));
    }
}
