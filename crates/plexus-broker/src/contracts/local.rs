//! Checking params against a contract away from the broker, the way the broker would: what
//! `plexus call --check` runs on the contract it introspected.

use std::collections::HashMap;

use serde_json::Value;

use super::check::{Checked, Refusal, check};
use super::compile::{compile, referenced_contracts};
use super::document::Document;

/// Why a local check did not pass.
#[derive(Debug)]
pub enum LocalFailure {
    /// The contract itself cannot be used (malformed, or a `$ref` names a contract not given).
    Contract(String),
    /// The params break the contract: the message and the error data the broker would answer.
    Refused {
        /// The message the broker would answer with.
        message: String,
        /// The error data the broker would answer with (JSON).
        data: String,
    },
}

/// The contracts a description's `$ref`s point into (`plexus://contracts/NAME`), by name.
pub fn referenced_contract_names(description: &Value) -> Vec<String> {
    referenced_contracts(description)
}

/// Checks `params` (JSON text; empty is `null`) of a call to `object.method` against
/// `description`, the contract `object` registered; `others` holds the contracts its `$ref`s
/// name. A method without a params schema passes.
pub fn check_params_locally(
    object: &str,
    description: &Value,
    others: &HashMap<String, Value>,
    method: &str,
    params: &[u8],
) -> Result<(), LocalFailure> {
    let doc =
        Document::parse(&description.to_string(), usize::MAX).map_err(LocalFailure::Contract)?;
    let Some(doc) = doc else {
        return Ok(());
    };
    let compiled =
        compile(object, &doc, |name| others.get(name)).map_err(LocalFailure::Contract)?;
    let Some(schema) = compiled.methods.get(method).and_then(|m| m.params.as_ref()) else {
        return Ok(());
    };
    check(schema, params).map_err(|violation| {
        let refusal = Refusal {
            check: Checked::Params,
            object: Some(object),
            method: Some(method),
            topic: None,
            violation: &violation,
        };
        LocalFailure::Refused {
            message: refusal.message(),
            data: refusal.data(),
        }
    })
}
