//! Subscriptions: a stream of events that unsubscribes when dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use crate::command::{Command, CommandSender};
use crate::event::Event;
use crate::event_queue::EventReader;

/// A live subscription: a [`futures_core::Stream`] of [`Event`]s, also readable with
/// [`Subscription::next`]. Dropping it unsubscribes.
///
/// Events wait in a queue of at most `subscription_capacity` events (see
/// [`crate::ClientBuilder::subscription_capacity`]); events that arrive while it is full are
/// dropped, and their count comes with the next event delivered ([`Event::dropped`]).
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    events: EventReader,
    commands: CommandSender,
}

impl Subscription {
    pub(crate) fn new(id: u64, events: EventReader, commands: CommandSender) -> Self {
        Subscription {
            id,
            events,
            commands,
        }
    }

    /// The next event; `None` once the client is closed.
    pub async fn next(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.events.poll_next(cx)).await
    }

    /// The next event if one is queued now, without waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.events.try_next()
    }

    /// The subscription id on the wire.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl futures_core::Stream for Subscription {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.events.poll_next(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Unsubscribe { id: self.id });
    }
}
