//! The broker's error type: what can stop it from starting or running.

use std::path::PathBuf;

/// Why the broker could not start or keep running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// Another broker answers on the socket.
    #[error("another broker is already listening on {0} — stop it first, or use --socket PATH")]
    AlreadyRunning(PathBuf),
    /// Something that is not a socket sits at the socket path.
    #[error("{0} exists and is not a socket — remove it or choose another path with --socket")]
    NotASocket(PathBuf),
    /// Another user could replace the socket in its directory.
    #[error("socket directory {} is not safe: {why}", dir.display())]
    UnsafeSocketDir {
        /// The directory.
        dir: PathBuf,
        /// Its owner and mode, why that is unsafe, and what to do.
        why: String,
    },
    /// The settings do not make sense together.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// The HTTP listener was asked for, but this build has none.
    #[error("this broker was built without the http feature (dashboard, monitoring API, /metrics)")]
    NoHttp,
    /// An I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl BrokerError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        BrokerError::Io {
            what: what.into(),
            source,
        }
    }
}
