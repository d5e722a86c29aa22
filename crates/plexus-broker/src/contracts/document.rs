//! Reading a contract out of a register description: which methods and topics carry schemas,
//! checked for shape and nesting depth before anything is compiled.

use std::collections::BTreeMap;

use plexus_proto::validate_topic;
use serde_json::{Map, Value};

/// A contract: the description a worker registered (or an operator pinned) that declares at
/// least one schema.
#[derive(Debug)]
pub struct Document {
    /// The whole description, the resource `$ref`s within the document resolve in.
    pub value: Value,
    /// Methods with a schema: name → which of `params` and `result` it declares.
    pub methods: BTreeMap<String, Declared>,
    /// Topics with a `payload` schema.
    pub topics: Vec<String>,
}

/// Which schemas a method declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declared {
    /// A schema for its params.
    pub params: bool,
    /// A schema for its result.
    pub result: bool,
}

impl Document {
    /// Reads a description: `Ok(None)` when it declares no schema (nothing to check), `Err`
    /// naming what is wrong when a schema, a method's `description` or `deprecated`, or a topic
    /// is malformed, or when the description nests deeper than `max_depth`.
    pub fn parse(text: &str, max_depth: usize) -> Result<Option<Document>, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("the description is not JSON: {e}"))?;
        let depth = depth(&value);
        if depth > max_depth {
            return Err(format!(
                "the contract nests {depth} levels deep, over the limit (max_contract_depth = {max_depth})"
            ));
        }
        let mut methods = BTreeMap::new();
        if let Some(Value::Object(declared)) = value.get("methods") {
            for (name, entry) in declared {
                let Value::Object(entry) = entry else {
                    return Err(format!(
                        "method '{name}' must be declared as an object like {{\"params\": {{...}}, \"result\": {{...}}}}"
                    ));
                };
                let what = format!("method '{name}'");
                check_docs(&what, entry)?;
                let params = schema_at(&what, entry, "params")?;
                let result = schema_at(&what, entry, "result")?;
                if params || result {
                    methods.insert(name.clone(), Declared { params, result });
                }
            }
        }
        let mut topics = Vec::new();
        match value.get("topics") {
            None => {}
            Some(Value::Object(declared)) => {
                for (topic, entry) in declared {
                    validate_topic(topic).map_err(|e| {
                        format!("topic contracts name exact topics, no wildcards: {e}")
                    })?;
                    let Value::Object(entry) = entry else {
                        return Err(format!(
                            "topic '{topic}' must be declared as an object like {{\"payload\": {{...}}}}"
                        ));
                    };
                    let what = format!("topic '{topic}'");
                    check_docs(&what, entry)?;
                    if schema_at(&what, entry, "payload")? {
                        topics.push(topic.clone());
                    }
                }
            }
            Some(_) => {
                return Err(
                    "\"topics\" must be an object of topic → {\"payload\": schema}".to_owned(),
                );
            }
        }
        if methods.is_empty() && topics.is_empty() {
            return Ok(None);
        }
        Ok(Some(Document {
            value,
            methods,
            topics,
        }))
    }

    /// The parts of the contract that are checked: the `$defs` and every schema, without the
    /// descriptions and deprecation flags. Two contracts are the same when these are.
    pub fn checked_parts(&self) -> Value {
        let mut parts = Map::new();
        if let Some(defs) = self.value.get("$defs") {
            parts.insert("$defs".to_owned(), defs.clone());
        }
        let mut methods = Map::new();
        for name in self.methods.keys() {
            let entry = &self.value["methods"][name];
            let mut kept = Map::new();
            for key in ["params", "result"] {
                if let Some(schema) = entry.get(key) {
                    kept.insert(key.to_owned(), schema.clone());
                }
            }
            methods.insert(name.clone(), Value::Object(kept));
        }
        parts.insert("methods".to_owned(), Value::Object(methods));
        let mut topics = Map::new();
        for topic in &self.topics {
            let payload = self.value["topics"][topic]["payload"].clone();
            topics.insert(topic.clone(), serde_json::json!({ "payload": payload }));
        }
        parts.insert("topics".to_owned(), Value::Object(topics));
        Value::Object(parts)
    }

    /// The `payload` schema of a topic this contract declares.
    pub fn topic_schema(&self, topic: &str) -> Option<&Value> {
        self.value.get("topics")?.get(topic)?.get("payload")
    }
}

/// Whether `entry` has a schema under `key`: a JSON object or a boolean, as JSON Schema has it.
fn schema_at(what: &str, entry: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match entry.get(key) {
        None => Ok(false),
        Some(Value::Object(_) | Value::Bool(_)) => Ok(true),
        Some(other) => Err(format!(
            "{what}: \"{key}\" must be a JSON Schema (an object or a boolean), not {other}"
        )),
    }
}

/// Checks a method's or topic's `description` (a string) and `deprecated` (a boolean).
fn check_docs(what: &str, entry: &Map<String, Value>) -> Result<(), String> {
    if let Some(d) = entry.get("description")
        && !d.is_string()
    {
        return Err(format!("{what}: \"description\" must be a string"));
    }
    if let Some(d) = entry.get("deprecated")
        && !d.is_boolean()
    {
        return Err(format!("{what}: \"deprecated\" must be true or false"));
    }
    Ok(())
}

/// How deeply `value` nests (a scalar is 0), without recursing.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Object(m) => stack.extend(m.values().map(|c| (c, d + 1))),
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, d + 1))),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_schemas_make_a_contract() {
        assert!(matches!(
            Document::parse(r#"{"methods":{"add":{}}}"#, 32),
            Ok(None)
        ));
        let doc = Document::parse(
            r#"{"methods":{"add":{"params":{"type":"object"},"description":"adds"},"x":{}},"topics":{"t.a":{"payload":true}}}"#,
            32,
        )
        .expect("valid")
        .expect("a contract");
        assert_eq!(
            doc.methods.get("add"),
            Some(&Declared {
                params: true,
                result: false
            })
        );
        assert_eq!(doc.topics, ["t.a"]);
        assert_eq!(
            doc.checked_parts(),
            serde_json::json!({"methods":{"add":{"params":{"type":"object"}}},"topics":{"t.a":{"payload":true}}})
        );
    }

    #[test]
    fn malformed_contracts_are_refused_naming_the_fault() {
        let cases = [
            (
                r#"{"methods":{"a":{"params":"{a,b}"}}}"#,
                "must be a JSON Schema",
            ),
            (r#"{"methods":{"a":[]}}"#, "must be declared as an object"),
            (r#"{"methods":{"a":{"description":1}}}"#, "description"),
            (r#"{"methods":{"a":{"deprecated":"yes"}}}"#, "deprecated"),
            (r#"{"topics":{"a.*":{"payload":{}}}}"#, "exact topics"),
            (r#"{"topics":[]}"#, "\"topics\" must be an object"),
            (
                r#"{"methods":{"a":{"params":{"items":{"items":{"items":{}}}}}}}"#,
                "max_contract_depth = 5",
            ),
        ];
        for (text, want) in cases {
            let err = Document::parse(text, 5).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
