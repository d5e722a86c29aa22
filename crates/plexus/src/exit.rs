//! Exit codes (ipcprims' table) and how failures are reported on stderr.

use plexus_client::{Error, ErrorCode};
use serde_json::{Value, json};

/// Success.
pub const OK: u8 = 0;
/// No broker answers / connection refused.
pub const NO_BROKER: u8 = 1;
/// The connection broke, or the handshake failed.
pub const TRANSPORT: u8 = 3;
/// The broker refused the operation.
pub const PERMISSION_DENIED: u8 = 50;
/// The command line or the params are not valid.
pub const INVALID_ARGS: u8 = 64;
/// No such object or method (or the worker went away).
pub const NO_SUCH_OBJECT: u8 = 69;
/// Nothing came back in time.
pub const TIMEOUT: u8 = 124;
/// Anything else: the broker, a worker, or plexus itself failed.
pub const INTERNAL: u8 = 125;

/// The table printed in `--help`.
pub const TABLE: &str = "Exit codes: 0 success, 1 no broker / connection refused, 3 transport error, \
50 permission denied, 60 schema validation failed, 64 invalid arguments, \
69 no such object or method, 124 timeout, 125 internal error.";

/// A command's failure: the exit code and what to tell the user.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// One line for people.
    pub message: String,
    /// The protocol error, when there is one.
    pub error: Option<(ErrorCode, Option<Value>)>,
}

impl Failure {
    /// A failure with no protocol error behind it.
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            error: None,
        }
    }

    /// Prints the failure to stderr, as JSON with `json`.
    pub fn report(&self, json: bool) {
        if json {
            let (name, code, data) = match &self.error {
                Some((c, data)) => (c.name(), Some(c.code()), data.clone()),
                None => ("cli", None, None),
            };
            let out = json!({ "error": { "name": name, "code": code, "message": self.message, "data": data, "exit": self.code } });
            eprintln!("{out}");
        } else {
            eprintln!("plexus: {}", self.message);
        }
    }
}

/// The exit code for a protocol error code.
pub fn for_code(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::PermissionDenied => PERMISSION_DENIED,
        ErrorCode::InvalidParams | ErrorCode::BadFrame | ErrorCode::FrameTooLarge => INVALID_ARGS,
        ErrorCode::NoSuchObject | ErrorCode::NoSuchMethod | ErrorCode::WorkerGone => NO_SUCH_OBJECT,
        ErrorCode::Timeout => TIMEOUT,
        ErrorCode::UnsupportedVersion => TRANSPORT,
        ErrorCode::NameTaken
        | ErrorCode::Overloaded
        | ErrorCode::Internal
        | ErrorCode::ShuttingDown => INTERNAL,
        // Codes added to the protocol later.
        _ => INTERNAL,
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        match e {
            Error::Remote {
                code,
                message,
                data,
            } => {
                let hint = match code {
                    ErrorCode::NoSuchObject => " — `plexus list` shows what is registered",
                    ErrorCode::Timeout => {
                        " — raise --timeout, or check the worker with `plexus list`"
                    }
                    _ => "",
                };
                Failure {
                    code: for_code(code),
                    message: format!("{code}: {message}{hint}"),
                    error: Some((code, data)),
                }
            }
            Error::NoBroker { .. } => Failure::new(NO_BROKER, e.to_string()),
            Error::Handshake { .. }
            | Error::ConnectionLost(_)
            | Error::NotConnected
            | Error::Closed
            | Error::Io(_) => Failure::new(TRANSPORT, e.to_string()),
            Error::UntrustedBroker { .. } => Failure::new(TRANSPORT, e.to_string()),
            Error::Json(_) | Error::Address(_) | Error::BadBrokerUid(_) => {
                Failure::new(INVALID_ARGS, e.to_string())
            }
            _ => Failure::new(INTERNAL, e.to_string()),
        }
    }
}

impl From<crate::params::ParamsError> for Failure {
    fn from(e: crate::params::ParamsError) -> Failure {
        Failure::new(INVALID_ARGS, e.to_string())
    }
}
