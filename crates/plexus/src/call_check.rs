//! `plexus call --check`: checks params against the object's contract, as the broker would,
//! without making the call.

use std::collections::HashMap;
use std::time::Duration;

use plexus_broker::{LocalFailure, check_params_locally, referenced_contract_names};
use plexus_client::Client;
use serde_json::{Value, json};

use crate::bus::Global;
use crate::exit::{Failure, INVALID_ARGS, OK, SCHEMA};

/// Contracts fetched at most to follow `$ref`s between contracts.
const MAX_CONTRACTS: usize = 32;

/// The description `name` registered, from `plexus.introspect` (`null` if none).
async fn description(client: &Client, name: &str) -> Result<Value, Failure> {
    let params = json!({ "name": name }).to_string();
    let raw = client
        .call_raw(
            "plexus",
            "introspect",
            params.as_bytes(),
            Duration::from_secs(30),
        )
        .await?;
    let info: Value = serde_json::from_slice(&raw).map_err(plexus_client::Error::from)?;
    Ok(info["description"].clone())
}

/// Runs the check: exit 0 when the params match (or the method has no params schema), 60 when
/// they do not, printing the pointer, keyword and reason.
pub async fn check(
    client: &Client,
    object: &str,
    method: &str,
    params: &[u8],
    g: &Global,
) -> Result<u8, Failure> {
    let contract = description(client, object).await?;
    let mut others = HashMap::new();
    let mut wanted = referenced_contract_names(&contract);
    while let Some(name) = wanted.pop() {
        if name == object || others.contains_key(&name) {
            continue;
        }
        if others.len() >= MAX_CONTRACTS {
            return Err(Failure::new(
                INVALID_ARGS,
                format!("the contract of {object} refers to more than {MAX_CONTRACTS} others"),
            ));
        }
        let other = description(client, &name).await?;
        wanted.extend(referenced_contract_names(&other));
        others.insert(name, other);
    }
    match check_params_locally(object, &contract, &others, method, params) {
        Ok(()) => {
            if g.json {
                println!("{}", json!({ "valid": true }));
            } else {
                println!("the params of {object}.{method} match its contract (not sent)");
            }
            Ok(OK)
        }
        Err(LocalFailure::Contract(why)) => Err(Failure::new(
            INVALID_ARGS,
            format!("the contract of {object} cannot be checked here: {why}"),
        )),
        Err(LocalFailure::Refused { message, data, .. }) => {
            let data: Value = serde_json::from_str(&data).unwrap_or_default();
            Err(Failure {
                code: SCHEMA,
                message: format!("invalid_params: {message} (checked locally, not sent)"),
                error: Some((plexus_client::ErrorCode::InvalidParams, Some(data))),
            })
        }
    }
}
