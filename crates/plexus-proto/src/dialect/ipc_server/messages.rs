//! The JSON of ipc-server's messages: what its peers send, told apart by their keys in the order
//! its server tries them, and what goes back to them.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

/// Every key an ipc-server message may carry; which are present says what it is.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Keys<'a> {
    reg_object: Option<String>,
    object: Option<String>,
    method: Option<String>,
    #[serde(borrow, deserialize_with = "present")]
    param: Option<&'a RawValue>,
    list: Option<Vec<String>>,
    event_name: Option<String>,
    event: Option<String>,
    #[serde(borrow, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, deserialize_with = "present")]
    response: Option<&'a RawValue>,
    #[serde(borrow, deserialize_with = "present")]
    error: Option<&'a RawValue>,
    success: Option<String>,
}

/// A key that is present, even with the value `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// What an ipc-server peer sent.
#[derive(Debug)]
pub(super) enum Incoming<'a> {
    /// `{"reg_object":N}`: own N.
    Register(String),
    /// `{"object":O,"method":M,"param":P}` (`param` optional): call.
    Call {
        object: String,
        method: String,
        param: Option<&'a RawValue>,
    },
    /// `{"list":[N...]}`: are all of these registered?
    List(Vec<String>),
    /// `{"event_name":E}`: receive the events named E.
    Subscribe(String),
    /// `{"event":E,"result":V}`: send V to every subscriber of E.
    Event { event: String, result: &'a RawValue },
    /// `{"response":V}`: a worker's answer to the call it was sent.
    Response(&'a RawValue),
    /// `{"error":V}`: a worker's failure of the call it was sent.
    Error(&'a RawValue),
    /// `{"success":...}`: nothing a peer needs to send; ignored.
    Success,
}

/// What `body` means, or why it means nothing.
pub(super) fn parse(body: &[u8]) -> Result<Incoming<'_>, String> {
    let keys: Keys<'_> =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON object: {e}"))?;
    if let Some(name) = keys.reg_object {
        return Ok(Incoming::Register(name));
    }
    if let (Some(object), Some(method)) = (keys.object, keys.method) {
        return Ok(Incoming::Call {
            object,
            method,
            param: keys.param,
        });
    }
    if keys.success.is_some() {
        return Ok(Incoming::Success);
    }
    if let Some(list) = keys.list {
        return Ok(Incoming::List(list));
    }
    if let Some(event) = keys.event_name {
        return Ok(Incoming::Subscribe(event));
    }
    if let (Some(event), Some(result)) = (keys.event, keys.result) {
        return Ok(Incoming::Event { event, result });
    }
    if let Some(value) = keys.response {
        return Ok(Incoming::Response(value));
    }
    if let Some(value) = keys.error {
        return Ok(Incoming::Error(value));
    }
    Err(
        "not an ipc-server message (none of reg_object, object and method, list, event_name, \
         event and result, response, error)"
            .to_owned(),
    )
}

/// What goes to an ipc-server peer.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum Outgoing<'a> {
    Success {
        success: &'a str,
    },
    List {
        list: &'a [String],
    },
    Response {
        response: &'a RawValue,
    },
    Error {
        error: &'a str,
    },
    Call {
        object: &'a str,
        method: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        param: Option<&'a RawValue>,
    },
    Event {
        event: &'a str,
        result: &'a RawValue,
    },
}

/// The JSON text of `msg`.
pub(super) fn to_json(msg: &Outgoing<'_>) -> Vec<u8> {
    // Strings and raw JSON always serialize.
    serde_json::to_vec(msg).unwrap_or_default()
}

/// The parameters of the `plexus.wait_for` call that answers `list`: the names, and no waiting.
#[derive(Serialize)]
pub(super) struct ListQuery<'a> {
    pub names: &'a [String],
    pub timeout_ms: u64,
}

impl ListQuery<'_> {
    /// The JSON text of the parameters.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings and numbers always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
