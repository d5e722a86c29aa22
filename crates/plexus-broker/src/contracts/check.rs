//! Checking a payload against a compiled schema, and the refusal a failure is answered with:
//! the JSON pointer of the failing value, the schema keyword and a readable reason.

use jsonschema::Validator;
use serde::Serialize;
use serde_json::Value;

/// What was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Checked {
    /// A call's params.
    Params,
    /// A worker's result.
    Result,
    /// An event's payload.
    Payload,
}

impl Checked {
    /// Its name in messages and error data.
    pub fn name(self) -> &'static str {
        match self {
            Checked::Params => "params",
            Checked::Result => "result",
            Checked::Payload => "payload",
        }
    }
}

/// Why a value does not meet its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// JSON pointer of the failing value within it (`""` for the value itself).
    pub pointer: String,
    /// The schema keyword that failed (`"json"` when the bytes are not JSON at all).
    pub keyword: String,
    /// What is wrong, readably.
    pub reason: String,
    /// Where in the schema the keyword is.
    pub schema_path: String,
}

/// Checks `payload` (JSON text; empty means `null`) against `schema`.
pub fn check(schema: &Validator, payload: &[u8]) -> Result<(), Violation> {
    let value: Value = if payload.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(payload).map_err(|e| Violation {
            pointer: String::new(),
            keyword: "json".to_owned(),
            reason: format!("not JSON: {e}"),
            schema_path: String::new(),
        })?
    };
    schema.validate(&value).map_err(|e| Violation {
        pointer: e.instance_path().to_string(),
        keyword: e.kind().keyword().to_owned(),
        reason: e.to_string(),
        schema_path: e.schema_path().to_string(),
    })
}

/// A refusal by a contract, as the error frame's message and data carry it.
#[derive(Debug, Serialize)]
pub struct Refusal<'a> {
    /// What was checked.
    pub check: Checked,
    /// The object called, for params and results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<&'a str>,
    /// The method called, for params and results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'a str>,
    /// The topic, for payloads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<&'a str>,
    /// What failed.
    #[serde(flatten)]
    pub violation: &'a Violation,
}

impl Refusal<'_> {
    /// The error message: what was checked, where, and why it failed.
    pub fn message(&self) -> String {
        let whose = match (self.object, self.method, self.topic) {
            (Some(o), Some(m), _) => format!("{o}.{m}"),
            (_, _, Some(t)) => format!("topic '{t}'"),
            _ => String::new(),
        };
        let v = self.violation;
        let at = if v.pointer.is_empty() {
            "the value itself".to_owned()
        } else {
            v.pointer.clone()
        };
        let verb = if self.check == Checked::Params {
            "do"
        } else {
            "does"
        };
        format!(
            "the {} of {whose} {verb} not match its contract: at {at}, {} (keyword \"{}\")",
            self.check.name(),
            v.reason,
            v.keyword
        )
    }

    /// The error data: a JSON object with `check`, `object`/`method` or `topic`, `pointer`,
    /// `keyword`, `reason` and `schema_path`.
    pub fn data(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_violation_names_the_pointer_keyword_and_reason() {
        let schema = jsonschema::draft202012::new(&serde_json::json!({
            "type": "object",
            "properties": {"a": {"type": "integer"}}
        }))
        .expect("schema");
        assert_eq!(check(&schema, br#"{"a": 1}"#), Ok(()));
        let v = check(&schema, br#"{"a": "x"}"#).expect_err("a is a string");
        assert_eq!((v.pointer.as_str(), v.keyword.as_str()), ("/a", "type"));
        assert!(v.reason.contains("integer"), "{}", v.reason);
        let v = check(&schema, b"").expect_err("null is not an object");
        assert_eq!((v.pointer.as_str(), v.keyword.as_str()), ("", "type"));
        let v = check(&schema, b"{nope").expect_err("not JSON");
        assert_eq!(v.keyword, "json");
        let r = Refusal {
            check: Checked::Params,
            object: Some("math"),
            method: Some("add"),
            topic: None,
            violation: &v,
        };
        let data: Value = serde_json::from_str(&r.data()).expect("JSON");
        assert_eq!(data["check"], "params");
        assert_eq!(data["object"], "math");
        assert_eq!(data["keyword"], "json");
        assert!(
            r.message().starts_with("the params of math.add"),
            "{}",
            r.message()
        );
    }
}
