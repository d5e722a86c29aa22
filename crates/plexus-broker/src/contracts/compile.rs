//! Compiling a contract's schemas once, draft 2020-12, with nothing fetched: a `$ref` resolves
//! within the document or in another registered contract (`plexus://contracts/NAME#/...`).

use std::collections::HashMap;
use std::sync::Arc;

use jsonschema::{Draft, PatternOptions, Registry, Validator};
use serde_json::Value;

use super::document::Document;

/// The URI prefix under which every registered contract can be referred to.
pub const CONTRACT_URI: &str = "plexus://contracts/";

/// Largest compiled size of one regular expression in a schema (`pattern`,
/// `patternProperties`), in bytes. Patterns use a regex engine without backtracking, so
/// checking a string costs time linear in its length.
const MAX_REGEX_BYTES: usize = 1 << 20;

/// A contract's compiled schemas.
#[derive(Debug, Default)]
pub struct Compiled {
    /// Methods with a schema, by name.
    pub methods: HashMap<String, Arc<MethodChecks>>,
    /// Topics with a payload schema, by topic.
    pub topics: HashMap<String, Arc<TopicCheck>>,
}

/// The checks of one method.
#[derive(Debug)]
pub struct MethodChecks {
    /// The object.
    pub object: Box<str>,
    /// The method.
    pub method: Box<str>,
    /// Its params' schema.
    pub params: Option<Validator>,
    /// Its result's schema.
    pub result: Option<Validator>,
}

/// The check of one topic's payloads.
#[derive(Debug)]
pub struct TopicCheck {
    /// The topic.
    pub topic: Box<str>,
    /// The payload's schema.
    pub payload: Validator,
}

/// Compiles the schemas of `doc`, the contract of `name`. `registered` gives the document of
/// another contract a `$ref` names. `Err` says which schema is wrong and why.
pub fn compile<'a>(
    name: &str,
    doc: &Document,
    registered: impl Fn(&str) -> Option<&'a Value>,
) -> Result<Compiled, String> {
    let own = format!("{CONTRACT_URI}{}", escape(name));
    let mut builder = Registry::new()
        .draft(Draft::Draft202012)
        .add(&own, Draft::Draft202012.create_resource(doc.value.clone()))
        .map_err(|e| format!("contract of '{name}': {e}"))?;
    for other in referenced_contracts(&doc.value) {
        if other == name {
            continue;
        }
        let Some(value) = registered(&other) else {
            return Err(format!(
                "a $ref names {CONTRACT_URI}{other}, but no contract named '{other}' is registered; a $ref may point within the document or to a registered contract, nothing else is fetched"
            ));
        };
        builder = builder
            .add(
                format!("{CONTRACT_URI}{}", escape(&other)),
                Draft::Draft202012.create_resource(value.clone()),
            )
            .map_err(|e| format!("contract of '{other}': {e}"))?;
    }
    let registry = builder
        .prepare()
        .map_err(|e| format!("the contract's references do not resolve: {e}"))?;
    let build = |path: &[&str]| -> Result<Validator, String> {
        let pointer: String = path.iter().map(|s| format!("/{}", escape(s))).collect();
        jsonschema::draft202012::options()
            .with_registry(&registry)
            .with_pattern_options(PatternOptions::regex().size_limit(MAX_REGEX_BYTES))
            .build(&serde_json::json!({ "$ref": format!("{own}#{pointer}") }))
            .map_err(|e| {
                let mut at = e.instance_path().to_string();
                if !at.starts_with(&pointer) {
                    at = pointer.clone();
                }
                format!("the schema at {at} is not valid: {e}")
            })
    };
    let mut compiled = Compiled::default();
    for (method, declared) in &doc.methods {
        let params = declared
            .params
            .then(|| build(&["methods", method, "params"]))
            .transpose()?;
        let result = declared
            .result
            .then(|| build(&["methods", method, "result"]))
            .transpose()?;
        compiled.methods.insert(
            method.clone(),
            Arc::new(MethodChecks {
                object: name.into(),
                method: method.as_str().into(),
                params,
                result,
            }),
        );
    }
    for topic in &doc.topics {
        let payload = build(&["topics", topic, "payload"])?;
        compiled.topics.insert(
            topic.clone(),
            Arc::new(TopicCheck {
                topic: topic.as_str().into(),
                payload,
            }),
        );
    }
    Ok(compiled)
}

/// The names of the other contracts a document's `$ref`s point into.
fn referenced_contracts(value: &Value) -> Vec<String> {
    let mut names = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref")
                    && let Some(rest) = r.strip_prefix(CONTRACT_URI)
                {
                    let name = rest.split('#').next().unwrap_or_default().to_owned();
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
                stack.extend(m.values());
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    names
}

/// A JSON pointer segment, escaped (`~0`, `~1`) and percent-encoded for a URI fragment.
fn escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.replace('~', "~0").replace('/', "~1").bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Document {
        Document::parse(text, 32)
            .expect("valid")
            .expect("a contract")
    }

    #[test]
    fn refs_resolve_within_the_document_and_to_registered_contracts() {
        let geo = serde_json::json!({"$defs": {"n": {"type": "number"}}});
        let d = doc(
            r##"{"$defs":{"p":{"type":"object","required":["x"]}},"methods":{"a/b":{"params":{"properties":{"p":{"$ref":"#/$defs/p"},"n":{"$ref":"plexus://contracts/geo#/$defs/n"}}}}}}"##,
        );
        let c = compile("math", &d, |n| (n == "geo").then_some(&geo)).expect("compiles");
        let v = c.methods["a/b"].params.as_ref().expect("params");
        assert!(v.is_valid(&serde_json::json!({"p": {"x": 1}, "n": 2})));
        assert!(!v.is_valid(&serde_json::json!({"p": {}})));
        assert!(!v.is_valid(&serde_json::json!({"n": "two"})));
        let err = compile("math", &d, |_| None).expect_err("geo is not registered");
        assert!(err.contains("no contract named 'geo'"), "{err}");
    }

    #[test]
    fn nothing_outside_is_fetched_and_bad_schemas_are_named() {
        for (text, want) in [
            (
                r#"{"methods":{"a":{"params":{"$ref":"https://example.com/s.json"}}}}"#,
                "schema at /methods/a/params",
            ),
            (
                r#"{"methods":{"a":{"result":{"$ref":"file:///etc/passwd"}}}}"#,
                "schema at /methods/a/result",
            ),
            (
                r#"{"topics":{"t":{"payload":{"type":5}}}}"#,
                "schema at /topics/t/payload",
            ),
        ] {
            let err = compile("x", &doc(text), |_| None).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
