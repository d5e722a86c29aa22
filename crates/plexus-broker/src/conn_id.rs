//! The id the broker gives each connection.

/// A connection's id, unique for the broker's lifetime (the first is 1).
pub type ConnId = u64;
