//! The plexus wire protocol: frames, message kinds and error codes, with no I/O.
//!
//! Every frame is a fixed 24-byte [`Header`] followed by `nstr` short length-prefixed UTF-8 strings
//! (object, method, topic, ...) and then the payload bytes, which are opaque here (JSON by
//! convention). A broker routes from the header and the strings and forwards the body untouched.
//! The byte-level specification is `docs/protocol.md`.

mod address;
mod decode_error;
pub mod dialect;
mod error_code;
mod fd_payload;
mod frame;
mod header;
mod kind;
mod names;

pub use address::{AddrError, BusAddr, default_socket_path};
pub use decode_error::DecodeError;
pub use error_code::ErrorCode;
pub use fd_payload::FdPayload;
pub use frame::{Frame, decode, decode_compact, encode, wants_fd};
pub use header::{HEADER_LEN, Header, MAGIC, MAX_STRINGS, VERSION};
pub use kind::{Kind, flags};
pub use names::{NameError, topic_matches, validate_name, validate_pattern, validate_topic};

/// Default largest frame (header + body) a broker accepts: a 16 MiB payload plus 64 KiB for the
/// header and the strings, so that 16 MiB params or events fit.
pub const DEFAULT_MAX_FRAME: u32 = 16 * 1024 * 1024 + 64 * 1024;

/// The name of the object the broker itself serves.
pub const BROKER_OBJECT: &str = "plexus";
