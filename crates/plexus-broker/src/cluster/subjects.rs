//! Where plexus things live in NATS: subjects for calls, events and cancels, the name store's
//! bucket and keys, and the escaping that makes any object name or method one subject token.
//!
//! A token keeps `A-Z a-z 0-9 _ -`; every other byte (`.`, `:`, `*`, `>`, `=`, anything else)
//! becomes `=` and two upper-case hex digits, and the empty string becomes a lone `=`. So an
//! object name with dots is one token, a wildcard can never reach NATS from a name, and the
//! token is also a valid JetStream key part.

use std::fmt::Write;

/// The subjects and keys of one cluster.
#[derive(Debug, Clone)]
pub struct Subjects {
    /// `plexus.<cluster>`.
    prefix: String,
    /// The name store's bucket.
    bucket: String,
}

impl Subjects {
    /// The subjects of cluster `cluster` (a token).
    pub fn new(cluster: &str) -> Subjects {
        Subjects {
            prefix: format!("plexus.{cluster}"),
            bucket: format!("plexus_{cluster}"),
        }
    }

    /// Where a call to `object`'s `method` is sent: `plexus.<cluster>.call.<object>.<method>`.
    pub fn call(&self, object: &str, method: &str) -> String {
        format!("{}.call.{}.{}", self.prefix, escape(object), escape(method))
    }

    /// What the broker that has `object` subscribes to: every method of it.
    pub fn calls_to(&self, object: &str) -> String {
        format!("{}.call.{}.*", self.prefix, escape(object))
    }

    /// The method a call subject names (its last token, unescaped).
    pub fn method_of(subject: &str) -> Option<String> {
        unescape(subject.rsplit('.').next()?)
    }

    /// Where an event on `topic` is published: topics are already dot-separated tokens of
    /// `A-Z a-z 0-9 _ - :`, so they map as they are.
    pub fn event(&self, topic: &str) -> String {
        format!("{}.event.{topic}", self.prefix)
    }

    /// Every event of the cluster.
    pub fn all_events(&self) -> String {
        format!("{}.event.>", self.prefix)
    }

    /// The topic of an event subject.
    pub fn topic_of<'a>(&self, subject: &'a str) -> Option<&'a str> {
        subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(".event.")
    }

    /// Where callers tell brokers that a call was cancelled.
    pub fn cancels(&self) -> String {
        format!("{}.cancel", self.prefix)
    }

    /// The name store's JetStream key-value bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

/// The name store key of an exclusive name: `x.<name>`.
pub fn exclusive_key(name: &str) -> String {
    format!("x.{}", escape(name))
}

/// The name store key that marks `name` as a queue group somewhere: `g.<name>`.
pub fn group_key(name: &str) -> String {
    format!("g.{}", escape(name))
}

/// The name store key of `node`'s membership of queue group `name`: `s.<name>.<node>`.
pub fn member_key(name: &str, node: &str) -> String {
    format!("s.{}.{node}", escape(name))
}

/// A name store key back as `(kind, name, node)`: kind `exclusive` or `shared`, the node of a
/// member key (an exclusive key's node is in its value); `None` for a group marker.
pub fn parse_key(key: &str) -> Option<(&'static str, String, Option<&str>)> {
    let (kind, rest) = key.split_once('.')?;
    match kind {
        "x" => Some(("exclusive", unescape(rest)?, None)),
        "s" => {
            let (name, node) = rest.split_once('.')?;
            Some(("shared", unescape(name)?, Some(node)))
        }
        _ => None,
    }
}

/// `text` as one subject token (see the module comment).
pub fn escape(text: &str) -> String {
    if text.is_empty() {
        return "=".to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "={b:02X}");
        }
    }
    out
}

/// The text an [`escape`]d token stands for; `None` for a token `escape` cannot make.
pub fn unescape(token: &str) -> Option<String> {
    if token == "=" {
        return Some(String::new());
    }
    let mut bytes = Vec::with_capacity(token.len());
    let mut rest = token.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'=' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_dots_and_wildcards_become_one_token() {
        for (name, token) in [
            ("calc", "calc"),
            ("org.example.calc", "org=2Eexample=2Ecalc"),
            ("a:b", "a=3Ab"),
            ("*", "=2A"),
            (">", "=3E"),
            ("x=y", "x=3Dy"),
            ("", "="),
            ("é", "=C3=A9"),
        ] {
            assert_eq!(escape(name), token);
            assert!(!token.contains(['.', '*', '>', ' ']));
            assert_eq!(unescape(token).as_deref(), Some(name));
        }
        assert_eq!(unescape("=4"), None);
        assert_eq!(unescape("=ZZ"), None);
    }

    #[test]
    fn subjects_and_keys() {
        let s = Subjects::new("prod");
        assert_eq!(
            s.call("math.calc", "add"),
            "plexus.prod.call.math=2Ecalc.add"
        );
        assert_eq!(s.calls_to("math.calc"), "plexus.prod.call.math=2Ecalc.*");
        assert_eq!(
            Subjects::method_of("plexus.prod.call.math=2Ecalc.add").as_deref(),
            Some("add")
        );
        assert_eq!(s.event("sensor.temp"), "plexus.prod.event.sensor.temp");
        assert_eq!(
            s.topic_of("plexus.prod.event.sensor.temp"),
            Some("sensor.temp")
        );
        assert_eq!(s.topic_of("plexus.other.event.sensor.temp"), None);
        assert_eq!(s.bucket(), "plexus_prod");
        assert_eq!(
            parse_key(&exclusive_key("a.b")),
            Some(("exclusive", "a.b".to_owned(), None))
        );
        assert_eq!(
            parse_key(&member_key("a.b", "n1")),
            Some(("shared", "a.b".to_owned(), Some("n1")))
        );
        assert_eq!(parse_key(&group_key("a.b")), None);
    }
}
