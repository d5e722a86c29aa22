//! Federation: brokers join a NATS cluster. Calls to names held on another broker become NATS
//! requests, names are claimed cluster-wide in a JetStream key-value bucket, events go to the
//! other brokers once. Loaded only when the broker is given `--cluster`; `docs/scaling.md`
//! explains the design.

mod config;
mod link;
mod port;
mod stats;
mod store;
mod subjects;

pub use config::ClusterConfig;
pub use link::run;
pub use port::{CLUSTER_OBJECT, Claim, ClusterPort};
pub use stats::ClusterStats;
