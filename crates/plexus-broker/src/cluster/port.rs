//! The cluster as the router sees it: the connection id of the link, whether NATS is up, what
//! is exported, and the name claims waiting for the name store's answer.

use std::collections::HashMap;
use std::sync::Arc;

use plexus_proto::topic_matches;

use super::ClusterConfig;
use super::stats::ClusterStats;
use crate::conn_id::ConnId;

/// The object the link serves on every broker (`plexus.cluster.names`); never exported.
pub const CLUSTER_OBJECT: &str = "plexus.cluster";

/// A registration waiting for the name store: connection `conn` asked with request `id`.
#[derive(Debug)]
pub struct Claim {
    /// Who registers.
    pub conn: ConnId,
    /// Its request id.
    pub id: u64,
    /// The name.
    pub name: String,
}

/// The router's side of the cluster link.
#[derive(Debug)]
pub struct ClusterPort {
    /// The link's connection: calls routed to it go to other brokers.
    pub conn: ConnId,
    /// The link's counters and state.
    pub stats: Arc<ClusterStats>,
    /// The cluster's name.
    pub cluster: String,
    /// This broker's node name.
    pub node: String,
    export_names: Vec<String>,
    export_topics: Vec<String>,
    claims: HashMap<u64, Claim>,
    next_claim: u64,
}

impl ClusterPort {
    /// The port of link `conn` configured by `config`.
    pub fn new(conn: ConnId, config: &ClusterConfig, stats: Arc<ClusterStats>) -> ClusterPort {
        ClusterPort {
            conn,
            stats,
            cluster: config.name.clone(),
            node: config.node.clone(),
            export_names: config.export_names.clone(),
            export_topics: config.export_topics.clone(),
            claims: HashMap::new(),
            next_claim: 1,
        }
    }

    /// Whether NATS is connected.
    pub fn up(&self) -> bool {
        self.stats.up()
    }

    /// Whether other brokers may call `name` here (and so it is claimed cluster-wide).
    pub fn exports_name(&self, name: &str) -> bool {
        name != CLUSTER_OBJECT
            && !name.starts_with("plexus.cluster.")
            && self.export_names.iter().any(|p| topic_matches(p, name))
    }

    /// Whether events on `topic` go to the cluster.
    pub fn exports_topic(&self, topic: &str) -> bool {
        self.export_topics.iter().any(|p| topic_matches(p, topic))
    }

    /// Records a claim; its token.
    pub fn add_claim(&mut self, claim: Claim) -> u64 {
        let token = self.next_claim;
        self.next_claim += 1;
        self.claims.insert(token, claim);
        token
    }

    /// Takes the claim with `token`.
    pub fn take_claim(&mut self, token: u64) -> Option<Claim> {
        self.claims.remove(&token)
    }
}
