//! The JSON-RPC 2.0 carried on COMMAND, the events on DATA and TELEMETRY, and the errors on
//! ERROR: what a peer sends and what goes back.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::error_code::ErrorCode;

/// Every member a COMMAND message may have.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Command<'a> {
    #[serde(borrow, deserialize_with = "present")]
    pub id: Option<&'a RawValue>,
    pub method: Option<String>,
    #[serde(borrow, deserialize_with = "present")]
    pub params: Option<&'a RawValue>,
    pub timeout_ms: Option<u32>,
    #[serde(borrow, deserialize_with = "present")]
    pub result: Option<&'a RawValue>,
    #[serde(borrow)]
    pub error: Option<RpcError<'a>>,
}

/// A member that is present, even with the value `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// A JSON-RPC error object.
#[derive(Deserialize, Serialize, Debug)]
pub(super) struct RpcError<'a> {
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub message: String,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a RawValue>,
}

/// The params of `subscribe`.
#[derive(Deserialize)]
pub(super) struct SubscribeParams {
    pub pattern: String,
    #[serde(default)]
    pub channel: Option<u16>,
}

/// The params of `unsubscribe`.
#[derive(Deserialize)]
pub(super) struct UnsubscribeParams {
    pub subscription: u64,
}

/// The params of `register` and `unregister`.
#[derive(Deserialize)]
pub(super) struct NameParams {
    pub name: String,
    #[serde(default)]
    pub shared: bool,
}

/// An event on DATA or TELEMETRY, both ways, and the params of `publish`.
#[derive(Deserialize, Serialize)]
pub(super) struct Event<'a> {
    pub topic: std::borrow::Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "present")]
    pub payload: Option<&'a RawValue>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A JSON-RPC message plexus writes.
#[derive(Serialize)]
struct Message<'a> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<RpcError<'a>>,
}

impl Message<'_> {
    fn to_json(&self) -> Vec<u8> {
        // Strings, numbers and raw JSON always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A JSON-RPC 2.0 request: `{"jsonrpc":"2.0","id":ID,"method":M,"params":P}`.
pub fn request(id: u64, method: &str, params: &RawValue) -> Vec<u8> {
    let id = RawValue::from_string(id.to_string()).unwrap_or_else(|_| RawValue::NULL.to_owned());
    Message {
        jsonrpc: "2.0",
        id: &id,
        method: Some(method),
        params: Some(params),
        result: None,
        error: None,
    }
    .to_json()
}

/// `{"jsonrpc":"2.0","id":ID,"result":R}`.
pub(super) fn result(id: &RawValue, result: &RawValue) -> Vec<u8> {
    Message {
        jsonrpc: "2.0",
        id,
        method: None,
        params: None,
        result: Some(result),
        error: None,
    }
    .to_json()
}

/// `{"jsonrpc":"2.0","id":ID,"error":{"code":C,"message":M,"data":D}}` with the plexus code.
pub(super) fn error(
    id: &RawValue,
    code: ErrorCode,
    message: &str,
    data: Option<&RawValue>,
) -> Vec<u8> {
    Message {
        jsonrpc: "2.0",
        id,
        method: None,
        params: None,
        result: None,
        error: Some(RpcError {
            code: i64::from(code.code()),
            message: message.to_owned(),
            data,
        }),
    }
    .to_json()
}

/// What came back on COMMAND for a request of the bridge.
#[derive(Debug)]
pub enum RpcAnswer {
    /// A JSON-RPC response with a result, or any other JSON (an echo): the result.
    Result(Box<RawValue>),
    /// A JSON-RPC error response: the code when it is a plexus code (else `internal`), the
    /// message and the data.
    Error(ErrorCode, String, Option<Box<RawValue>>),
    /// A JSON-RPC response to another request (one given up on); skip it.
    Other,
}

impl PartialEq for RpcAnswer {
    fn eq(&self, other: &RpcAnswer) -> bool {
        match (self, other) {
            (RpcAnswer::Result(a), RpcAnswer::Result(b)) => a.get() == b.get(),
            (RpcAnswer::Error(c, m, d), RpcAnswer::Error(c2, m2, d2)) => {
                c == c2 && m == m2 && d.as_ref().map(|d| d.get()) == d2.as_ref().map(|d| d.get())
            }
            (RpcAnswer::Other, RpcAnswer::Other) => true,
            _ => false,
        }
    }
}

/// What `payload`, read on COMMAND after the request `id`, answers. Payloads that are not JSON
/// are taken as a JSON string of their text.
pub fn parse_answer(payload: &[u8], id: u64) -> RpcAnswer {
    let Ok(command) = serde_json::from_slice::<Command<'_>>(payload) else {
        return RpcAnswer::Result(super::super::payload_json(payload).into_owned());
    };
    let is_response =
        command.method.is_none() && (command.result.is_some() || command.error.is_some());
    if !is_response {
        return RpcAnswer::Result(super::super::payload_json(payload).into_owned());
    }
    if command
        .id
        .is_none_or(|got| serde_json::from_str::<u64>(got.get()).ok() != Some(id))
    {
        return RpcAnswer::Other;
    }
    if let Some(e) = command.error {
        let code = u32::try_from(e.code)
            .ok()
            .and_then(ErrorCode::from_code)
            .unwrap_or(ErrorCode::Internal);
        return RpcAnswer::Error(code, e.message, e.data.map(ToOwned::to_owned));
    }
    match command.result {
        Some(r) => RpcAnswer::Result(r.to_owned()),
        None => RpcAnswer::Result(RawValue::NULL.to_owned()),
    }
}
