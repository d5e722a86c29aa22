//! Subscriptions: a stream of events that unsubscribes when dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::command::{Command, CommandSender};
use crate::event::Event;

/// A live subscription: a [`futures_core::Stream`] of [`Event`]s, also readable with
/// [`Subscription::next`]. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    events: mpsc::Receiver<Event>,
    commands: CommandSender,
}

impl Subscription {
    pub(crate) fn new(id: u64, events: mpsc::Receiver<Event>, commands: CommandSender) -> Self {
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
