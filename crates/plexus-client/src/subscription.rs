//! Subscriptions: a stream of events that unsubscribes when dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::Error;
use crate::socket_task::Command;

/// One event received.
#[derive(Debug, Clone)]
pub struct Event {
    /// The topic it was published on.
    pub topic: String,
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

/// A live subscription: a [`futures_core::Stream`] of [`Event`]s, also readable with
/// [`Subscription::next`]. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    events: mpsc::Receiver<Event>,
    commands: mpsc::UnboundedSender<Command>,
}

impl Subscription {
    pub(crate) fn new(
        id: u64,
        events: mpsc::Receiver<Event>,
        commands: mpsc::UnboundedSender<Command>,
    ) -> Self {
        Subscription {
            id,
            events,
            commands,
        }
    }

    /// The next event; `None` once the client is closed.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The subscription id on the wire.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl futures_core::Stream for Subscription {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Unsubscribe { id: self.id });
    }
}
