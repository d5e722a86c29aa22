//! The first difference between two contracts' checked parts, for the message that refuses a
//! registration whose contract differs from the pinned one (or from its queue group's).

use serde_json::Value;

/// Where `offered` first differs from `expected` (keys in sorted order, depth first): the JSON
/// pointer and what each side has there; `None` when they are equal.
pub fn first_difference(expected: &Value, offered: &Value) -> Option<String> {
    let mut path = String::new();
    walk(expected, offered, &mut path)
}

fn walk(expected: &Value, offered: &Value, path: &mut String) -> Option<String> {
    match (expected, offered) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let len = path.len();
                path.push('/');
                path.push_str(&key.replace('~', "~0").replace('/', "~1"));
                let found = match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => walk(x, y, path),
                    (Some(_), None) => Some(format!("{path} is missing")),
                    (None, Some(_)) => Some(format!("{path} is not in the expected contract")),
                    (None, None) => None,
                };
                if found.is_some() {
                    return found;
                }
                path.truncate(len);
            }
            None
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                let len = path.len();
                path.push_str(&format!("/{i}"));
                if let Some(found) = walk(x, y, path) {
                    return Some(found);
                }
                path.truncate(len);
            }
            (a.len() != b.len()).then(|| {
                format!(
                    "{path} has {} items, the expected contract {}",
                    b.len(),
                    a.len()
                )
            })
        }
        (x, y) if x == y => None,
        (x, y) => {
            let shown = |v: &Value| {
                let mut s = v.to_string();
                if s.len() > 80 {
                    let mut end = 77;
                    while !s.is_char_boundary(end) {
                        end -= 1;
                    }
                    s.truncate(end);
                    s.push_str("...");
                }
                s
            };
            Some(format!(
                "{path} is {} where the expected contract has {}",
                shown(y),
                shown(x)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_difference_is_named_by_its_pointer() {
        let a = json!({"methods": {"add": {"params": {"type": "object", "required": ["a", "b"]}}}});
        assert_eq!(first_difference(&a, &a), None);
        let b = json!({"methods": {"add": {"params": {"type": "array", "required": ["a"]}}}});
        assert_eq!(
            first_difference(&a, &b).as_deref(),
            Some("/methods/add/params/required has 1 items, the expected contract 2")
        );
        let c = json!({"methods": {"add": {"params": {"type": "array", "required": ["a", "b"]}}}});
        assert_eq!(
            first_difference(&a, &c).as_deref(),
            Some(
                "/methods/add/params/type is \"array\" where the expected contract has \"object\""
            )
        );
        let d = json!({"methods": {}});
        assert_eq!(
            first_difference(&a, &d).as_deref(),
            Some("/methods/add is missing")
        );
        assert_eq!(
            first_difference(&d, &a).as_deref(),
            Some("/methods/add is not in the expected contract")
        );
    }
}
