//! Printing: JSON as it came (numbers exactly as the sender wrote them), pretty or on one line,
//! and tables.

use serde_json::Value;

/// `raw` JSON on one line, with the whitespace between tokens removed.
pub fn compact(raw: &str) -> String {
    reformat(raw, None)
}

/// `raw` JSON indented by two spaces per level.
pub fn pretty(raw: &str) -> String {
    reformat(raw, Some("  "))
}

/// Prints JSON bytes (empty means `null`): on one line with `one_line`, else pretty. Bytes that
/// are not JSON are printed as a JSON string of their text.
pub fn print_json_bytes(bytes: &[u8], one_line: bool) {
    let text = json_text(bytes);
    if one_line {
        println!("{}", compact(&text));
    } else {
        println!("{}", pretty(&text));
    }
}

/// JSON bytes as JSON text: `null` for none, a JSON string for bytes that are not JSON.
pub fn json_text(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "null".to_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(text) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => compact(text),
        _ => Value::String(String::from_utf8_lossy(bytes).into_owned()).to_string(),
    }
}

/// Re-lays out valid JSON token by token, leaving strings and numbers as they are.
fn reformat(raw: &str, indent: Option<&str>) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut depth = 0usize;
    let mut chars = raw.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        if let Some(unit) = indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(unit);
            }
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                while let Some(s) = chars.next() {
                    out.push(s);
                    match s {
                        '\\' => {
                            if let Some(escaped) = chars.next() {
                                out.push(escaped);
                            }
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                if chars.peek().is_some_and(|&n| n == '}' || n == ']') {
                    if let Some(close) = chars.next() {
                        out.push(close);
                    }
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => {
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
            }
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// Prints rows as left-aligned columns.
pub fn print_table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

/// A JSON value as a table cell: strings bare, null as `-`.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_changes_and_values_do_not() {
        let raw = r#"{ "n": 123456789012345678901234567890, "v": 1.10, "s": "a, {b}: \"c\"", "e": [ ], "o": {} ,"l":[1,2]}"#;
        assert_eq!(
            compact(raw),
            r#"{"n":123456789012345678901234567890,"v":1.10,"s":"a, {b}: \"c\"","e":[],"o":{},"l":[1,2]}"#
        );
        assert_eq!(
            pretty(r#"{"a":[1,{"b":"x"}],"e":{}}"#),
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": \"x\"\n    }\n  ],\n  \"e\": {}\n}"
        );
        assert_eq!(json_text(b""), "null");
        assert_eq!(json_text(b"not json"), "\"not json\"");
    }
}
