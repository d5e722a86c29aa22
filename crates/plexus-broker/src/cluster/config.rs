//! The cluster settings: where NATS is, how to log in, what this broker is called, and what it
//! shares with the other brokers.

use std::path::PathBuf;
use std::time::Duration;

use plexus_proto::{validate_name, validate_pattern};

/// How a broker joins a cluster of brokers through NATS (`plexus broker --cluster URL`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://host:4222`); the client picks one and fails over to the others.
    pub servers: Vec<String>,
    /// The cluster's name: every NATS subject and the name store carry it, so that several
    /// clusters can share one NATS system.
    pub name: String,
    /// This broker's name in the cluster, unique in it (the host name by default).
    pub node: String,
    /// A NATS credentials file (JWT and nkey seed).
    pub credentials: Option<PathBuf>,
    /// A NATS token.
    pub token: Option<String>,
    /// CA certificates to trust for NATS servers' TLS certificates (PEM).
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for NATS servers that ask for one; with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Refuse NATS servers that do not speak TLS.
    pub tls_required: bool,
    /// How long a broker's names outlive it in the name store when it stops renewing them (it
    /// renews them every third of this).
    pub lease: Duration,
    /// Copies the name store keeps (JetStream replicas: 1, or 3 or 5 in a JetStream cluster).
    pub kv_replicas: usize,
    /// Names (patterns, `*` and `>` as for topics) other brokers may call here; `[">"]` is all.
    pub export_names: Vec<String>,
    /// Topics (patterns) whose events this broker sends to the cluster.
    pub export_topics: Vec<String>,
    /// Topics (patterns) whose events from other brokers this broker delivers to its subscribers.
    pub import_topics: Vec<String>,
}

impl ClusterConfig {
    /// A cluster config for these NATS servers, with defaults for the rest.
    pub fn new(servers: Vec<String>) -> ClusterConfig {
        ClusterConfig {
            servers,
            name: "plexus".to_owned(),
            node: default_node(),
            credentials: None,
            token: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_required: false,
            lease: Duration::from_secs(15),
            kv_replicas: 1,
            export_names: vec![">".to_owned()],
            export_topics: vec![">".to_owned()],
            import_topics: vec![">".to_owned()],
        }
    }

    /// Checks the settings; the error names the one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.servers.is_empty() {
            return Err("cluster: at least one NATS server URL is needed".to_owned());
        }
        for url in &self.servers {
            if url.parse::<async_nats::ServerAddr>().is_err() {
                return Err(format!(
                    "cluster: {url:?} is not a NATS server URL (nats://host:4222)"
                ));
            }
        }
        for (what, value) in [("cluster_name", &self.name), ("cluster_node", &self.node)] {
            if !is_token(value) {
                return Err(format!(
                    "{what} {value:?} must be 1-64 letters, digits, '_' or '-' (it is part of NATS subjects)"
                ));
            }
        }
        if self.lease < Duration::from_secs(1) {
            return Err(format!(
                "cluster_lease {} ms is too short; at least 1 s",
                self.lease.as_millis()
            ));
        }
        if !matches!(self.kv_replicas, 1..=5) {
            return Err(format!(
                "cluster_kv_replicas {} must be 1 to 5",
                self.kv_replicas
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("cluster_tls_cert and cluster_tls_key go together".to_owned());
        }
        for (what, list) in [
            ("cluster_export_names", &self.export_names),
            ("cluster_export_topics", &self.export_topics),
            ("cluster_import_topics", &self.import_topics),
        ] {
            for pattern in list {
                validate_pattern(pattern).map_err(|e| format!("{what}: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Whether `s` can be one token of a NATS subject and part of a JetStream bucket name.
fn is_token(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The host name, made into a token; `node` if there is none.
fn default_node() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let token: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if token.is_empty() || validate_name(&token).is_err() {
        "node".to_owned()
    } else {
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_named() {
        let good = ClusterConfig::new(vec!["nats://127.0.0.1:4222".into()]);
        assert_eq!(good.validate(), Ok(()));
        type Spoil = fn(&mut ClusterConfig);
        let cases: [(&str, Spoil); 5] = [
            ("at least one", |c| c.servers.clear()),
            ("cluster_node", |c| c.node = "a.b".into()),
            ("cluster_name", |c| c.name = String::new()),
            ("cluster_lease", |c| c.lease = Duration::from_millis(10)),
            ("cluster_export_names", |c| {
                c.export_names = vec!["a.>.b".into()]
            }),
        ];
        for (named, spoil) in cases {
            let mut c = good.clone();
            spoil(&mut c);
            let err = c.validate().expect_err(named);
            assert!(err.contains(named), "{err} names {named}");
        }
    }
}
