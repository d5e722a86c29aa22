//! One event received on a subscription.

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::topic::Topic;

/// One event received.
#[derive(Debug, Clone)]
pub struct Event {
    /// The topic it was published on (events on the same topic share one string).
    pub topic: Topic,
    /// The body, as published (JSON).
    pub payload: Bytes,
    /// Events on this subscription lost before this one (a full queue at the broker or here).
    pub dropped: u32,
}

impl Event {
    /// The body parsed as `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let text: &[u8] = if self.payload.is_empty() {
            b"null"
        } else {
            &self.payload
        };
        Ok(serde_json::from_slice(text)?)
    }
}
