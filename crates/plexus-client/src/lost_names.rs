//! Names this client served and lost on a reconnect, for the program that serves them to hear of.

use std::pin::Pin;
use std::task::{Context, Poll};

use plexus_proto::ErrorCode;
use tokio::sync::mpsc;

/// A name this client served and lost: registering it again after a reconnect failed, most
/// often with `name_taken` because another client took it while this one was away. The client
/// no longer serves it; [`crate::Client::serve`] it again to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NameLost {
    /// The name.
    pub name: String,
    /// The broker's error code.
    pub code: ErrorCode,
    /// The broker's message.
    pub message: String,
}

/// The names lost from now on: a [`futures_core::Stream`] of [`NameLost`], also readable with
/// [`LostNames::next`]. Made by [`crate::Client::lost_names`].
#[derive(Debug)]
pub struct LostNames {
    losses: mpsc::UnboundedReceiver<NameLost>,
}

impl LostNames {
    pub(crate) fn new(losses: mpsc::UnboundedReceiver<NameLost>) -> Self {
        LostNames { losses }
    }

    /// The next name lost; `None` once the client is closed.
    pub async fn next(&mut self) -> Option<NameLost> {
        self.losses.recv().await
    }
}

impl futures_core::Stream for LostNames {
    type Item = NameLost;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<NameLost>> {
        self.losses.poll_recv(cx)
    }
}
