//! Exit codes (ipcprims' table, plus codes for a method's own error, a taken name and a stopping
//! broker) and how failures are reported on stderr.

use plexus_client::{Error, ErrorCode};
use plexus_proto::BROKER_OBJECT;
use serde_json::{Value, json};

/// Success.
pub const OK: u8 = 0;
/// No broker answers / connection refused.
pub const NO_BROKER: u8 = 1;
/// The called method failed: the worker answered with an error of its own.
pub const METHOD_FAILED: u8 = 2;
/// The connection broke, or the handshake failed.
pub const TRANSPORT: u8 = 3;
/// The broker refused the operation.
pub const PERMISSION_DENIED: u8 = 50;
/// A contract's schema refused the params, the result or the event payload.
pub const SCHEMA: u8 = 60;
/// The command line or the params are not valid.
pub const INVALID_ARGS: u8 = 64;
/// No such object or method (or the worker went away).
pub const NO_SUCH_OBJECT: u8 = 69;
/// The name is registered by another connection.
pub const NAME_TAKEN: u8 = 73;
/// The broker is shutting down; try again once it is back.
pub const SHUTTING_DOWN: u8 = 75;
/// Nothing came back in time.
pub const TIMEOUT: u8 = 124;
/// Anything else: the broker or plexus itself failed.
pub const INTERNAL: u8 = 125;

/// The table printed in `--help`.
pub const TABLE: &str = "Exit codes: 0 success, 1 no broker / connection refused, \
2 the method failed (the worker's own error), 3 transport error (the connection broke), \
50 permission denied, 60 a contract's schema refused the params, result or payload, 64 invalid arguments, \
69 no such object or method (or its worker went away), 73 name taken, \
75 the broker is shutting down, 124 timeout, 125 internal error.";

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

    /// The failure of a call to `object.method`: as [`From<Error>`], except that an error the
    /// worker made itself (`internal`, or `invalid_params` from anyone but the broker) is the
    /// method failing, exit 2, named after the call.
    pub fn of_call(e: Error, object: &str, method: &str) -> Failure {
        let mut failure = Failure::from(e);
        if failure.code == SCHEMA {
            return failure;
        }
        if let Some((code, _)) = &failure.error {
            let own = match code {
                ErrorCode::Internal => true,
                ErrorCode::InvalidParams => object != BROKER_OBJECT,
                _ => false,
            };
            if own {
                failure.code = METHOD_FAILED;
                failure.message = format!("{object}.{method} failed: {}", failure.message);
            }
        }
        failure
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
        ErrorCode::NameTaken => NAME_TAKEN,
        ErrorCode::ShuttingDown => SHUTTING_DOWN,
        ErrorCode::Overloaded | ErrorCode::Internal => INTERNAL,
        ErrorCode::InvalidResult => SCHEMA,
        // Codes added to the protocol later.
        _ => INTERNAL,
    }
}

/// Whether an error is a contract's refusal: `invalid_result`, or `invalid_params` whose data
/// names the check, the failing value's pointer and the schema keyword.
fn by_contract(code: ErrorCode, data: Option<&Value>) -> bool {
    match code {
        ErrorCode::InvalidResult => true,
        ErrorCode::InvalidParams => data.is_some_and(|d| {
            d["check"].is_string() && d["pointer"].is_string() && d["keyword"].is_string()
        }),
        _ => false,
    }
}

/// What to do about an error with `code`, appended to its message.
fn hint(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::NoSuchObject => " — `plexus list` shows what is registered",
        ErrorCode::NoSuchMethod => " — `plexus introspect OBJECT` shows the methods it declared",
        ErrorCode::InvalidResult => {
            " — the worker's answer breaks its contract; `plexus introspect OBJECT` shows it"
        }
        ErrorCode::Timeout => " — raise --timeout, or check the worker with `plexus list`",
        ErrorCode::NameTaken => " — `plexus list` shows who owns it",
        ErrorCode::ShuttingDown => " — the broker is stopping; try again once it is back",
        ErrorCode::Overloaded => " — try again later",
        _ => "",
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        match e {
            Error::Remote {
                code,
                message,
                data,
            } => Failure {
                code: if by_contract(code, data.as_ref()) {
                    SCHEMA
                } else {
                    for_code(code)
                },
                message: format!("{code}: {message}{}", hint(code)),
                error: Some((code, data)),
            },
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
