//! The client's one error type, carrying the protocol's error code where there is one, and the
//! reading of an answer frame as a result.

use bytes::Bytes;
use plexus_proto::{AddrError, ErrorCode, Frame, Kind};
use serde_json::Value;

/// Everything that can go wrong talking to the bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker or the worker answered with an error.
    #[error("{code}: {message}")]
    Remote {
        /// The protocol's error code.
        code: ErrorCode,
        /// What happened, for people.
        message: String,
        /// Extra JSON data, if any.
        data: Option<Value>,
    },
    /// Nothing listens at the bus address.
    #[error("no broker at {addr} ({source}) — start one with `plexus broker`")]
    NoBroker {
        /// The address tried.
        addr: String,
        /// Why the connection failed.
        source: std::io::Error,
    },
    /// The broker did not complete the handshake.
    #[error("handshake with the broker at {addr} failed: {why}")]
    Handshake {
        /// The address.
        addr: String,
        /// What went wrong.
        why: String,
    },
    /// The connection broke while the request was open; it may or may not have been carried out.
    #[error("the connection to the broker was lost while the request was open: {0}")]
    ConnectionLost(String),
    /// The client is reconnecting; nothing was sent.
    #[error("not connected to the broker (reconnecting); nothing was sent")]
    NotConnected,
    /// The broker runs as a user the client does not trust; nothing was sent to it.
    #[error("{}", untrusted(addr, *broker_uid, *own_uid, *expected))]
    UntrustedBroker {
        /// The address.
        addr: String,
        /// The user the broker runs as (from the socket's peer credentials).
        broker_uid: u32,
        /// The client's own user.
        own_uid: u32,
        /// The user `PLEXUS_BROKER_UID` or `trust_broker_uid` asked for, if any.
        expected: Option<u32>,
    },
    /// `PLEXUS_BROKER_UID` is not a user id.
    #[error("PLEXUS_BROKER_UID is {0:?}, not a numeric user id")]
    BadBrokerUid(String),
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
    /// Params or a result could not be turned into or out of JSON.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The bus address is not valid.
    #[error(transparent)]
    Address(#[from] AddrError),
    /// A socket error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a broker is not trusted, naming both users and what to do.
fn untrusted(addr: &str, broker_uid: u32, own_uid: u32, expected: Option<u32>) -> String {
    match expected {
        Some(uid) => format!(
            "the broker at {addr} runs as uid {broker_uid}, not uid {uid} as PLEXUS_BROKER_UID (or trust_broker_uid) requires; nothing was sent to it"
        ),
        None => format!(
            "the broker at {addr} runs as uid {broker_uid}, neither this client's user (uid {own_uid}) nor root; nothing was sent to it. If it is the broker to use, set PLEXUS_BROKER_UID={broker_uid}"
        ),
    }
}

impl Error {
    /// An error with a protocol code, for worker handlers to return.
    pub fn remote(code: ErrorCode, message: impl Into<String>) -> Error {
        Error::Remote {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// `no_such_method` for `method`.
    pub fn no_such_method(method: &str) -> Error {
        Error::remote(ErrorCode::NoSuchMethod, format!("no method '{method}'"))
    }

    /// `invalid_params` with a message.
    pub fn invalid_params(message: impl Into<String>) -> Error {
        Error::remote(ErrorCode::InvalidParams, message)
    }

    /// The protocol error code: the remote one, or the closest for local failures.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Remote { code, .. } => *code,
            Error::Json(_) => ErrorCode::InvalidParams,
            Error::Address(_) | Error::BadBrokerUid(_) => ErrorCode::InvalidParams,
            Error::UntrustedBroker { .. } => ErrorCode::PermissionDenied,
            Error::NoBroker { .. }
            | Error::Handshake { .. }
            | Error::NotConnected
            | Error::Closed => ErrorCode::Internal,
            Error::ConnectionLost(_) | Error::Io(_) => ErrorCode::Internal,
        }
    }

    /// The error an `Error` frame carries.
    pub(crate) fn from_frame(frame: &Frame) -> Error {
        let payload = frame.payload();
        let data = if payload.is_empty() {
            None
        } else {
            serde_json::from_slice(&payload).ok()
        };
        Error::Remote {
            code: frame.error_code(),
            message: frame.string(0).to_owned(),
            data,
        }
    }
}

/// The payload of an answer (`reply` or `pong`), or the error an `error` frame carries. A reply
/// that came with a memfd is read here, by the caller's task.
pub(crate) fn into_result(frame: Frame) -> Result<Bytes, Error> {
    match frame.kind() {
        Kind::Error => Err(Error::from_frame(&frame)),
        _ => Ok(crate::Payload::of_frame(&frame).to_bytes()?),
    }
}
