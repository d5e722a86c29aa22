//! Test support for plexus: a real broker on a temporary socket ([`TestBroker`]), a client that
//! speaks raw frames ([`RawClient`]), and finding the outside tools some tests need.

mod broker;
mod raw_client;
mod raw_fds;
mod tools;

use std::time::Duration;

pub use broker::{StoppedBroker, TestBroker};
pub use raw_client::{RawClient, json};
pub use raw_fds::{memfd, read_memfd};
pub use tools::{in_ci, missing, python_with};

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);
