//! NATS-style patterns on dot-separated names as policy rules use them: whether a name (or a
//! call's object and method) matches, whether a pattern covers a subscription pattern, and
//! whether two patterns can match a common topic.

/// Whether the tokens of a name match `pattern` (`*` one token, a last `>` one or more).
pub fn matches<'a>(pattern: &str, mut tokens: impl Iterator<Item = &'a str>) -> bool {
    for p in pattern.split('.') {
        if p == ">" {
            return tokens.next().is_some();
        }
        match tokens.next() {
            Some(t) if p == "*" || p == t => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

/// Whether every topic `sub` matches is also matched by `pattern`: a subscription to `sub` can
/// receive only what `pattern` allows.
pub fn covers(pattern: &str, sub: &str) -> bool {
    let mut subs = sub.split('.');
    for p in pattern.split('.') {
        let Some(s) = subs.next() else {
            return false;
        };
        match p {
            ">" => return true,
            "*" if s != ">" => {}
            literal if literal == s => {}
            _ => return false,
        }
    }
    subs.next().is_none()
}

/// Whether some topic matches both patterns.
pub fn intersects(a: &str, b: &str) -> bool {
    let (mut xs, mut ys) = (a.split('.'), b.split('.'));
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == "*" || y == "*" || x == y => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> std::str::Split<'_, char> {
        text.split('.')
    }

    #[test]
    fn a_name_matches_like_a_nats_subject() {
        assert!(matches("secret.*", name("secret.get")));
        assert!(!matches("secret.*", name("secret.a.get")));
        assert!(matches("secret.>", name("secret.a.get")));
        assert!(!matches("secret.>", name("secret")));
        assert!(matches(">", name("anything.at.all")));
        assert!(matches("org.*.math.add", name("org.x.math.add")));
        let call = "org.x.math".split('.').chain(std::iter::once("add"));
        assert!(matches("org.x.math.*", call));
    }

    #[test]
    fn a_pattern_covers_subscriptions_it_contains() {
        assert!(covers("sensor.>", "sensor.>"));
        assert!(covers("sensor.>", "sensor.*.temp"));
        assert!(covers("sensor.*", "sensor.temp"));
        assert!(covers("sensor.*", "sensor.*"));
        assert!(!covers("sensor.*", "sensor.>"), "> reaches deeper than *");
        assert!(!covers("sensor.temp", "sensor.*"));
        assert!(!covers("sensor.>", ">"));
        assert!(!covers("sensor.>", "sensor"));
        assert!(covers(">", ">"));
    }

    #[test]
    fn patterns_intersect_when_a_topic_matches_both() {
        assert!(intersects("secret.>", ">"));
        assert!(intersects("secret.*", "*.key"));
        assert!(intersects("a.b", "a.b"));
        assert!(!intersects("a.b", "a.c"));
        assert!(!intersects("a.*", "a.b.c"));
        assert!(intersects("a.>", "a.b.c"));
        assert!(!intersects("a.>", "a"));
        assert!(!intersects("a.b", "a.b.c"));
    }
}
