//! The JSON of ipc-broker's packets: what its peers send and what goes back to them.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// What an ipc-broker peer sends: its `RpcRequest` variants, and the `RpcResponse` variants a
/// worker answers with.
#[derive(Deserialize)]
pub(super) enum Incoming<'a> {
    RegisterObject {
        object_name: String,
    },
    RegisterService {
        object_name: String,
    },
    Call {
        call_id: String,
        object_name: String,
        method: String,
        #[serde(borrow)]
        args: &'a RawValue,
    },
    Subscribe {
        object_name: String,
        topic: String,
    },
    Publish {
        object_name: String,
        topic: String,
        #[serde(borrow)]
        args: &'a RawValue,
    },
    HasObject {
        object_name: String,
    },
    Result {
        call_id: String,
        #[serde(borrow)]
        value: &'a RawValue,
    },
    Error {
        call_id: Option<String>,
        message: String,
    },
}

/// What goes to an ipc-broker peer.
#[derive(Serialize)]
pub(super) enum Outgoing<'a> {
    Call {
        call_id: String,
        object_name: &'a str,
        method: &'a str,
        args: &'a RawValue,
    },
    Registered {
        object_name: &'a str,
    },
    Result {
        call_id: &'a str,
        object_name: &'a str,
        value: &'a RawValue,
    },
    Error {
        call_id: Option<&'a str>,
        object_name: &'a str,
        message: &'a str,
    },
    Event {
        object_name: &'a str,
        topic: &'a str,
        args: &'a RawValue,
    },
    HasObjectResult {
        object_name: &'a str,
        exists: bool,
    },
}

/// The JSON text of `msg`.
pub(super) fn to_json(msg: &Outgoing<'_>) -> Vec<u8> {
    // Strings, booleans and raw JSON always serialize.
    serde_json::to_vec(msg).unwrap_or_default()
}

/// The parameters of the `plexus.wait_for` call that answers `HasObject`: the one name, and no
/// waiting.
#[derive(Serialize)]
pub(super) struct HasObjectQuery<'a> {
    /// The object asked about.
    pub names: [&'a str; 1],
    /// Always 0.
    pub timeout_ms: u64,
}

impl HasObjectQuery<'_> {
    /// The JSON text of the parameters.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings and numbers always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
