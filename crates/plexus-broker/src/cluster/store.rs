//! The cluster's name store: a JetStream key-value bucket whose keys say which broker (node)
//! holds which name. Exclusive names are created with compare-and-set (`create` fails when the
//! key exists; renewals `update` the revision they hold), queue groups are a marker plus one key
//! per member node; every key lives for the lease unless its holder renews it.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::subjects::{Subjects, exclusive_key, group_key, member_key, parse_key};

/// What a key's value says.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    node: String,
}

/// Why a name could not be claimed or kept.
#[derive(Debug)]
pub enum Refusal {
    /// Another broker holds it: what holds it.
    Taken(String),
    /// The store did not answer: why.
    Unreachable(String),
}

/// Opens the cluster's bucket, creating it (with `replicas` copies, keys living `lease`) if it
/// is not there yet.
pub async fn open(
    client: async_nats::Client,
    subjects: &Subjects,
    lease: Duration,
    replicas: usize,
) -> Result<kv::Store, String> {
    let js = jetstream::new(client);
    if let Ok(store) = js.get_key_value(subjects.bucket()).await {
        return Ok(store);
    }
    // The stream a key-value bucket is, made directly: the client's `create_key_value` first
    // asks for account details that NATS 2.9 servers do not send in the form it expects.
    let bucket = subjects.bucket();
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{bucket}"),
        description: Some("plexus: which broker holds which name".to_owned()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age: lease,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        duplicate_window: lease.min(Duration::from_secs(120)),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot create the name store {bucket}: {e}"))?;
    js.get_key_value(bucket)
        .await
        .map_err(|e| format!("cannot open the name store {bucket}: {e}"))
}

fn record(node: &str) -> bytes::Bytes {
    serde_json::to_vec(&Record {
        node: node.to_owned(),
    })
    .unwrap_or_default()
    .into()
}

fn unreachable(e: impl std::fmt::Display) -> Refusal {
    Refusal::Unreachable(e.to_string())
}

/// The node a live key names, if the key is live.
async fn holder(store: &kv::Store, key: &str) -> Result<Option<(String, u64)>, Refusal> {
    let entry = store.entry(key).await.map_err(unreachable)?;
    Ok(entry
        .filter(|e| e.operation == kv::Operation::Put)
        .map(|e| {
            let node = serde_json::from_slice::<Record>(&e.value)
                .map(|r| r.node)
                .unwrap_or_default();
            (node, e.revision)
        }))
}

/// Claims `name` for `node`: exclusive, or as a member of a queue group. Returns the revision
/// to renew it with.
pub async fn claim(
    store: &kv::Store,
    name: &str,
    node: &str,
    shared: bool,
) -> Result<u64, Refusal> {
    if shared {
        if let Some((owner, _)) = holder(store, &exclusive_key(name)).await?
            && owner != node
        {
            return Err(Refusal::Taken(format!(
                "broker '{owner}' (exclusively, not as a queue group)"
            )));
        }
        store
            .put(group_key(name), record(node))
            .await
            .map_err(unreachable)?;
        return store
            .put(member_key(name, node), record(node))
            .await
            .map_err(unreachable);
    }
    let key = exclusive_key(name);
    let mut attempts = 0;
    let revision = loop {
        attempts += 1;
        match store.create(&key, record(node)).await {
            Ok(revision) => break revision,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                match holder(store, &key).await? {
                    // Ours from before (this node restarted, or renews after an outage).
                    Some((owner, revision)) if owner == node => {
                        break store
                            .update(&key, record(node), revision)
                            .await
                            .map_err(unreachable)?;
                    }
                    Some((owner, _)) => return Err(Refusal::Taken(format!("broker '{owner}'"))),
                    // The key expired or was deleted between the two reads: try again.
                    None if attempts < 3 => {}
                    None => return Err(Refusal::Unreachable("the key kept changing".into())),
                }
            }
            Err(e) => return Err(unreachable(e)),
        }
    };
    match store.entry(group_key(name)).await {
        Ok(Some(e)) if e.operation == kv::Operation::Put => {
            let _ = store.delete_expect_revision(&key, Some(revision)).await;
            Err(Refusal::Taken("a queue group on another broker".into()))
        }
        Ok(_) => Ok(revision),
        Err(e) => {
            let _ = store.delete_expect_revision(&key, Some(revision)).await;
            Err(unreachable(e))
        }
    }
}

/// Renews `node`'s claim on `name` held at `revision`; a claim whose key expired is made
/// again. Returns the new revision; `Taken` when another broker took the name meanwhile.
pub async fn renew(
    store: &kv::Store,
    name: &str,
    node: &str,
    shared: bool,
    revision: u64,
) -> Result<u64, Refusal> {
    if !shared
        && let Ok(revision) = store
            .update(exclusive_key(name), record(node), revision)
            .await
    {
        return Ok(revision);
    }
    claim(store, name, node, shared).await
}

/// Gives up `node`'s claim on `name`.
pub async fn release(store: &kv::Store, name: &str, node: &str, shared: bool, revision: u64) {
    let _ = if shared {
        store.delete(member_key(name, node)).await
    } else {
        store
            .delete_expect_revision(exclusive_key(name), Some(revision))
            .await
    };
}

/// One name somewhere in the cluster.
#[derive(Debug, Serialize)]
pub struct Listed {
    /// The object name.
    pub name: String,
    /// `exclusive` or `shared`.
    pub kind: &'static str,
    /// The broker (node) it lives on.
    pub node: String,
}

/// Every name in the store, at most `limit` of them.
pub async fn list(store: &kv::Store, limit: usize) -> Result<Vec<Listed>, String> {
    let mut keys = store.keys().await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| e.to_string())?;
        let Some((kind, name, member)) = parse_key(&key) else {
            continue;
        };
        let node = match member {
            Some(node) => Some(node.to_owned()),
            None => holder(store, &key)
                .await
                .ok()
                .flatten()
                .map(|(node, _)| node),
        };
        if let Some(node) = node {
            out.push(Listed { name, kind, node });
        }
        if out.len() >= limit {
            break;
        }
    }
    out.sort_by(|a, b| (&a.name, &a.node).cmp(&(&b.name, &b.node)));
    Ok(out)
}
