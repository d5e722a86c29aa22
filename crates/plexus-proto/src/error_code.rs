//! Stable numeric error codes carried in `Error` frames.

/// An error code: stable number, stable name. The table is in `docs/protocol.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No connection owns the called object name.
    NoSuchObject = 1,
    /// The object exists but has no such method (answered by the worker).
    NoSuchMethod = 2,
    /// The call's deadline passed before a reply came.
    Timeout = 3,
    /// The worker disconnected while the call was pending.
    WorkerGone = 4,
    /// The name is already registered by another connection.
    NameTaken = 5,
    /// A frame exceeded the broker's size limit.
    FrameTooLarge = 6,
    /// Bytes that are not a valid frame, or a frame that makes no sense here.
    BadFrame = 7,
    /// The peer speaks a protocol major version the broker does not.
    UnsupportedVersion = 8,
    /// The operation is not allowed for this connection.
    PermissionDenied = 9,
    /// Params, name, topic or pattern are not acceptable.
    InvalidParams = 10,
    /// A queue on the way is full; try again later.
    Overloaded = 11,
    /// A bug or unexpected failure in the answering party.
    Internal = 12,
    /// The broker is shutting down.
    ShuttingDown = 13,
    /// A worker's result does not match its method's contract (the broker answers this
    /// instead of forwarding it).
    InvalidResult = 14,
    // Cluster.
    /// The broker cannot reach what the request needs (its cluster's NATS); try again later.
    Unavailable = 15,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::NoSuchObject,
        ErrorCode::NoSuchMethod,
        ErrorCode::Timeout,
        ErrorCode::WorkerGone,
        ErrorCode::NameTaken,
        ErrorCode::FrameTooLarge,
        ErrorCode::BadFrame,
        ErrorCode::UnsupportedVersion,
        ErrorCode::PermissionDenied,
        ErrorCode::InvalidParams,
        ErrorCode::Overloaded,
        ErrorCode::Internal,
        ErrorCode::ShuttingDown,
        ErrorCode::InvalidResult,
        // Cluster.
        ErrorCode::Unavailable,
    ];

    /// The number on the wire.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The code for a number, if it is one.
    pub fn from_code(code: u32) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::NoSuchObject => "no_such_object",
            ErrorCode::NoSuchMethod => "no_such_method",
            ErrorCode::Timeout => "timeout",
            ErrorCode::WorkerGone => "worker_gone",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::InvalidParams => "invalid_params",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Internal => "internal",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::InvalidResult => "invalid_result",
            // Cluster.
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// The code for a name, if it is one.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
