//! Why a connection ends, and telling a refused peer why.

use plexus_proto::{ErrorCode, Frame};
use tracing::info;

use crate::conn_id::ConnId;
use crate::outbox::Outbox;

/// Why a connection stopped reading.
pub enum Stop {
    /// The peer closed, or the broker is shutting down.
    Closed,
    /// The peer sent something that ends the connection.
    Refused(ErrorCode, String),
}

impl Stop {
    /// Queues the error that tells a refused peer why, as the last frame of its outbox.
    pub fn tell_peer(&self, conn: ConnId, outbox: &Outbox) {
        if let Stop::Refused(code, message) = self {
            info!(conn, code = code.name(), %message, "connection refused");
            outbox.push_always(Frame::error(0, *code, message, b""));
        }
    }
}
