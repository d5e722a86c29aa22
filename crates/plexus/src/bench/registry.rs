//! The scenarios `plexus bench` knows, in the order it runs them. Adding a scenario is one file
//! in this directory and one line here.

use super::Bench;
use super::report::Report;
use super::{
    cluster, fanout, floor, memory, payload, rpc_latency, rpc_throughput, rpc_validated, tcp,
};
use crate::exit::Failure;
use std::future::Future;
use std::pin::Pin;

/// What a scenario's run returns: one report per object it prints (one, or one per size).
pub type Outcome<'a> = Pin<Box<dyn Future<Output = Result<Vec<Report>, Failure>> + 'a>>;

/// One benchmark scenario.
pub struct Scenario {
    /// Its name on the command line and in `scenario` of its JSON objects.
    pub name: &'static str,
    /// One line for `plexus bench --list`.
    pub about: &'static str,
    /// Runs it against the bench's bus.
    pub run: for<'a> fn(&'a Bench) -> Outcome<'a>,
}

/// Every scenario, in the order `plexus bench` runs them.
pub const ALL: &[Scenario] = &[
    floor::SCENARIO,
    rpc_latency::SCENARIO,
    rpc_throughput::SCENARIO,
    rpc_validated::SCENARIO,
    fanout::SCENARIO,
    payload::SCENARIO,
    memory::SCENARIO,
    tcp::SCENARIO,
    // Cluster (only with `plexus bench --cluster` or by name).
    cluster::SCENARIO,
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}
