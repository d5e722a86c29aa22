//! Why bytes could not be decoded as a frame, and the error code a receiver answers with.

use crate::error_code::ErrorCode;

/// Why bytes could not be decoded as a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame does not start with `PX`.
    #[error("bad magic bytes {0:02x?}: expected \"PX\"")]
    BadMagic([u8; 2]),
    /// The sender speaks another major version.
    #[error("unsupported protocol version {0} (this side speaks version 1)")]
    UnsupportedVersion(u8),
    /// The kind byte names no kind.
    #[error("unknown frame kind 0x{0:02x}")]
    UnknownKind(u8),
    /// More strings than [`MAX_STRINGS`](crate::MAX_STRINGS).
    #[error("frame declares {0} strings; at most 4 are allowed")]
    TooManyStrings(u8),
    /// Reserved header bytes must be zero.
    #[error("reserved header bytes are not zero")]
    ReservedNotZero,
    /// The whole frame would exceed the receiver's limit.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Declared size of the frame (header + body).
        size: u64,
        /// The receiver's limit.
        limit: u32,
    },
    /// A string runs past the end of the body.
    #[error("string {0} runs past the end of the frame body")]
    StringOverrun(usize),
    /// A string is not UTF-8.
    #[error("string {0} is not valid UTF-8")]
    StringNotUtf8(usize),
    /// The frame has fewer strings than its kind needs.
    #[error("a {kind} frame needs {need} strings, this one has {got}")]
    MissingStrings {
        /// Kind name.
        kind: &'static str,
        /// Strings the kind needs.
        need: usize,
        /// Strings present.
        got: usize,
    },
    /// Memfd payloads: a frame flagged to carry its payload in a memfd has payload bytes inline.
    #[error(
        "a frame flagged fd_payload carries its payload in a memfd, but this one has {0} payload bytes inline"
    )]
    InlinePayloadWithFd(usize),
}

impl DecodeError {
    /// The protocol error code a receiver answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            DecodeError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            _ => ErrorCode::BadFrame,
        }
    }
}
