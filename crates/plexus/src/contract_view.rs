//! Showing a service's contract: short type summaries of schemas for `plexus introspect`'s
//! table, the schemas in full, and reference docs in Markdown (`--markdown`).

use std::fmt::Write as _;

use serde_json::Value;

/// A one-line summary of a schema: `{a: integer, b?: string}`, `[number]`, `"x"|"y"`, the last
/// segment of a `$ref`, `any` for `true`.
pub fn summary(schema: &Value) -> String {
    summarize(schema, 0)
}

fn summarize(schema: &Value, depth: usize) -> String {
    if depth > 3 {
        return "…".to_owned();
    }
    let Value::Object(s) = schema else {
        return match schema {
            Value::Bool(true) => "any".to_owned(),
            Value::Bool(false) => "nothing".to_owned(),
            other => other.to_string(),
        };
    };
    if let Some(Value::String(r)) = s.get("$ref") {
        return r.rsplit('/').next().unwrap_or(r).to_owned();
    }
    if let Some(Value::Array(options)) = s.get("enum") {
        return options
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("|");
    }
    if let Some(c) = s.get("const") {
        return c.to_string();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(options)) = s.get(key) {
            return options
                .iter()
                .map(|o| summarize(o, depth + 1))
                .collect::<Vec<_>>()
                .join("|");
        }
    }
    let kind = match s.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("|"),
        _ if s.contains_key("properties") => "object".to_owned(),
        _ => return "any".to_owned(),
    };
    match kind.as_str() {
        "object" => {
            let Some(Value::Object(props)) = s.get("properties") else {
                return "object".to_owned();
            };
            let required: Vec<&str> = s
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let fields: Vec<String> = props
                .iter()
                .map(|(name, p)| {
                    let optional = if required.contains(&name.as_str()) {
                        ""
                    } else {
                        "?"
                    };
                    format!("{name}{optional}: {}", summarize(p, depth + 1))
                })
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        "array" => match s.get("items") {
            Some(items) => format!("[{}]", summarize(items, depth + 1)),
            None => "array".to_owned(),
        },
        _ => kind,
    }
}

/// The signature column: `params -> result` from the schemas (`-` for a side without one).
pub fn signature(detail: &Value) -> Option<String> {
    let params = detail
        .get("params")
        .filter(|s| s.is_object() || s.is_boolean());
    let result = detail
        .get("result")
        .filter(|s| s.is_object() || s.is_boolean());
    if params.is_none() && result.is_none() {
        return None;
    }
    let side = |s: Option<&Value>| s.map_or_else(|| "-".to_owned(), summary);
    Some(format!("{} -> {}", side(params), side(result)))
}

/// The schemas of every method and topic, one per line, for the plain output.
pub fn schema_lines(description: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(methods) = description["methods"].as_object() {
        for (name, detail) in methods {
            for key in ["params", "result"] {
                if let Some(schema) = detail.get(key).filter(|s| s.is_object() || s.is_boolean()) {
                    lines.push(format!("{name} {key}: {schema}"));
                }
            }
        }
    }
    if let Some(topics) = description["topics"].as_object() {
        for (topic, detail) in topics {
            if let Some(schema) = detail.get("payload") {
                lines.push(format!("topic {topic} payload: {schema}"));
            }
        }
    }
    lines
}

/// Reference docs for the service `name` in Markdown, from its introspect answer.
pub fn markdown(name: &str, info: &Value) -> String {
    let mut out = format!("# `{name}`\n\n");
    let description = &info["description"];
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    match description["methods"].as_object() {
        Some(methods) if !methods.is_empty() => {
            out.push_str("## Methods\n\n");
            for (method, detail) in methods {
                let deprecated = if detail["deprecated"] == Value::Bool(true) {
                    " *(deprecated)*"
                } else {
                    ""
                };
                let _ = writeln!(out, "### `{name}.{method}`{deprecated}\n");
                if let Some(text) = detail["description"].as_str() {
                    let _ = writeln!(out, "{text}\n");
                }
                if let Some(sig) = signature(detail) {
                    let _ = writeln!(out, "`{sig}`\n");
                }
                for (key, title) in [("params", "Params"), ("result", "Result")] {
                    if let Some(schema) =
                        detail.get(key).filter(|s| s.is_object() || s.is_boolean())
                    {
                        let _ = writeln!(out, "**{title}**\n\n```json\n{}\n```\n", pretty(schema));
                    }
                }
            }
        }
        _ => out.push_str("No methods declared.\n\n"),
    }
    if let Some(topics) = description["topics"].as_object().filter(|t| !t.is_empty()) {
        out.push_str("## Topics\n\n");
        for (topic, detail) in topics {
            let _ = writeln!(out, "### `{topic}`\n");
            if let Some(text) = detail["description"].as_str() {
                let _ = writeln!(out, "{text}\n");
            }
            if let Some(schema) = detail.get("payload") {
                let _ = writeln!(out, "**Payload**\n\n```json\n{}\n```\n", pretty(schema));
            }
        }
    }
    if let Some(defs) = description.get("$defs") {
        let _ = writeln!(out, "## Definitions\n\n```json\n{}\n```\n", pretty(defs));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schemas_are_summarized_in_one_line() {
        let params = json!({"type": "object", "properties": {"a": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["a"]});
        assert_eq!(summary(&params), "{a: integer, tags?: [string]}");
        assert_eq!(summary(&json!({"enum": ["x", "y"]})), "\"x\"|\"y\"");
        assert_eq!(summary(&json!({"$ref": "#/$defs/point"})), "point");
        assert_eq!(summary(&json!(true)), "any");
        assert_eq!(
            signature(&json!({"params": params, "description": "d"})).as_deref(),
            Some("{a: integer, tags?: [string]} -> -")
        );
        assert_eq!(signature(&json!({"params": "{a,b}"})), None);
    }

    #[test]
    fn markdown_lists_methods_schemas_and_topics() {
        let info = json!({"description": {
            "methods": {"add": {"description": "Adds.", "deprecated": true, "params": {"type": "object"}}},
            "topics": {"t.x": {"payload": {"type": "number"}}}
        }});
        let md = markdown("math", &info);
        assert!(
            md.starts_with("# `math`\n\n## Methods\n\n### `math.add` *(deprecated)*\n\nAdds.\n"),
            "{md}"
        );
        assert!(
            md.contains("**Params**\n\n```json\n{\n  \"type\": \"object\"\n}\n```"),
            "{md}"
        );
        assert!(md.contains("## Topics\n\n### `t.x`"), "{md}");
    }
}
