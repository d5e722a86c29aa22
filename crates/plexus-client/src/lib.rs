//! Rust client for the plexus bus: call methods on other processes' objects, serve objects,
//! publish and subscribe to events, and wait for names.
//!
//! ```no_run
//! use plexus_client::Client;
//! use serde_json::{Value, json};
//!
//! # async fn demo() -> Result<(), plexus_client::Error> {
//! let client = Client::connect().await?;
//! let sum: Value = client.call("math", "add", &json!({"a": 10, "b": 32})).await?;
//! client.publish("sensor.temperature", &json!("25.6°C")).await?;
//! let mut events = client.subscribe("sensor.>").await?;
//! while let Some(event) = events.next().await {
//!     println!("{}: {}", event.topic, event.json::<Value>()?);
//! }
//! # Ok(()) }
//! ```
//!
//! One task owns the socket; the API sends it commands over a channel and waits on oneshot
//! answers. A call whose future is dropped is cancelled at the broker and the worker. A publish
//! does not wait: it takes room in a bounded queue and returns; [`Client::flush`] waits until
//! every publish before it is written.
//!
//! Inside, `connect` opens the socket and does the handshake, `session` holds the protocol state
//! with no I/O (open requests, subscriptions, served names, running calls), `event_loop` is the
//! task that feeds it and writes what it queues, `publish_queue` bounds the bytes published and
//! not yet written, and `worker` runs incoming calls.

mod address;
#[cfg(feature = "blocking")]
pub mod blocking;
mod builder;
mod client;
mod command;
mod connect;
mod error;
mod event;
mod event_loop;
mod event_queue;
mod id_map;
mod lost_names;
mod memfd;
// Memfd payloads: params and results as they travel.
mod payload;
mod publish_queue;
mod session;
mod socket;
mod subscription;
mod topic;
mod worker;

use std::time::Duration;

pub use address::default_bus;
pub use builder::ClientBuilder;
pub use client::{Call, Client, Delivery};
pub use error::Error;
pub use event::Event;
pub use lost_names::{LostNames, NameLost};
pub use payload::Payload;
pub use plexus_proto::{BusAddr, ErrorCode};
pub use subscription::Subscription;
pub use topic::Topic;
pub use worker::{CallContext, Contract, FnObject, Object, Serve, parse_params};

/// What the broker announced in its `welcome`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerInfo {
    /// This connection's id at the broker.
    pub conn_id: u64,
    /// The largest frame the broker accepts.
    pub max_frame: u32,
    /// The broker's version.
    pub version: String,
}

/// Client options, set through [`ClientBuilder`].
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub name: String,
    pub reconnect: bool,
    pub call_timeout: Duration,
    pub max_concurrent_calls: usize,
    pub subscription_capacity: usize,
    pub trust_broker_uid: Option<u32>,
    pub token: Option<Token>,
}

/// The token sent in `hello` on TCP; never printed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token(pub Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Default for Options {
    fn default() -> Self {
        let name = std::env::args().next().and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        });
        Options {
            name: name.unwrap_or_else(|| "plexus-client".to_owned()),
            reconnect: true,
            call_timeout: Duration::from_secs(30),
            max_concurrent_calls: 1024,
            subscription_capacity: 65_536,
            trust_broker_uid: None,
            token: None,
        }
    }
}
