//! Checks on JSON text the broker embeds as it is in its own JSON (payloads in monitor records,
//! descriptions in `plexus.introspect` answers): it must be one valid value, and nested shallow
//! enough that a reader with serde_json's recursion limit (128) can read the answer it is in.
//! Neither check recurses, so text of any depth is safe to check.

use serde_json::value::RawValue;

/// The deepest nesting of arrays and objects embedded as it is. It leaves room under serde_json's
/// recursion limit for the objects the text is embedded in.
pub const MAX_NESTING: usize = 100;

/// `text` as one JSON value, if it is one nested at most [`MAX_NESTING`] deep.
pub fn embeddable(text: &[u8]) -> Option<&RawValue> {
    // Parsing into a RawValue skips over the value without recursing (unlike parsing into a
    // Value), so it has no depth limit to hit.
    let raw = serde_json::from_slice::<&RawValue>(text).ok()?;
    (nesting(raw.get().as_bytes()) <= MAX_NESTING).then_some(raw)
}

/// How deep arrays and objects nest in JSON text (brackets inside strings do not count).
pub fn nesting(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        "[".repeat(depth) + &"]".repeat(depth)
    }

    #[test]
    fn nesting_counts_arrays_and_objects_but_not_brackets_in_strings() {
        assert_eq!(nesting(b"1"), 0);
        assert_eq!(nesting(br#"{"a":[1,{"b":[]}]}"#), 4);
        assert_eq!(nesting(br#"["[[[\"]]]{{"]"#), 1);
        assert_eq!(nesting(nested(100_000).as_bytes()), 100_000);
    }

    #[test]
    fn only_valid_json_within_the_nesting_limit_is_embeddable() {
        assert_eq!(
            embeddable(b" {\"a\":1} ").map(RawValue::get),
            Some("{\"a\":1}")
        );
        assert!(embeddable(nested(MAX_NESTING).as_bytes()).is_some());
        assert!(embeddable(nested(MAX_NESTING + 1).as_bytes()).is_none());
        assert!(
            embeddable(nested(1_000_000).as_bytes()).is_none(),
            "checking a deep value neither overflows the stack nor panics"
        );
        assert!(embeddable(b"{\"a\":").is_none());
        assert!(embeddable(b"").is_none());
        assert!(embeddable(b"\xff").is_none());
    }

    #[test]
    fn a_value_too_deep_for_serde_json_is_still_a_valid_raw_value() {
        let deep = nested(200);
        let raw = serde_json::from_slice::<&RawValue>(deep.as_bytes());
        assert!(raw.is_ok(), "a RawValue is not depth limited");
        let value = serde_json::from_slice::<serde_json::Value>(deep.as_bytes());
        assert!(
            value.is_err(),
            "a Value is: this is why the depth is checked"
        );
    }
}
