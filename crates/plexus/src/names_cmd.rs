//! `plexus list` (names, or subscriptions), `plexus introspect` and `plexus wait`: what is on the
//! bus.

use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use crate::bus::{Global, parse_duration};
use crate::exit::{Failure, OK};
use crate::output::{cell, json_text, print_table};

/// `plexus list [--subscriptions]`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// List the subscriptions (pattern, queue group, connection) instead of the names.
    #[arg(long)]
    subscriptions: bool,
    // Cluster.
    /// List the names on every broker of the cluster, with the broker (node) each lives on.
    #[arg(long, conflicts_with = "subscriptions")]
    cluster: bool,
}

/// Runs `plexus list`: a table of names and their owners (or with --subscriptions of every
/// subscription), or the broker's JSON.
pub async fn list(args: ListArgs, g: Global) -> Result<u8, Failure> {
    let client = g.connect("list").await?;
    let (object, method) = if args.subscriptions {
        ("plexus", "subscriptions")
    } else if args.cluster {
        ("plexus.cluster", "names")
    } else {
        ("plexus", "list")
    };
    let raw = client
        .call_raw(object, method, b"", Duration::from_secs(30))
        .await?;
    if g.json {
        println!("{}", json_text(&raw));
        return Ok(OK);
    }
    let answer: Value = serde_json::from_slice(&raw).map_err(plexus_client::Error::from)?;
    if args.subscriptions {
        print_subscriptions(&answer);
    } else if args.cluster {
        print_cluster_names(&answer);
    } else {
        print_names(&answer);
    }
    Ok(OK)
}

/// The answer of `plexus.list` as a table, one row per owner.
fn print_names(names: &Value) {
    let mut rows = vec![
        [
            "NAME", "KIND", "CONN", "PID", "UID", "CALLS", "CLIENT", "EXE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for entry in names.as_array().into_iter().flatten() {
        for owner in entry["owners"].as_array().into_iter().flatten() {
            rows.push(vec![
                cell(&entry["name"]),
                cell(&entry["kind"]),
                cell(&owner["conn_id"]),
                cell(&owner["pid"]),
                cell(&owner["uid"]),
                cell(&entry["calls_served"]),
                cell(&owner["client"]),
                cell(&owner["exe"]),
            ]);
        }
    }
    print_table(&rows);
}

// Cluster.
/// The answer of `plexus.cluster.names` as a table, one row per name and broker.
fn print_cluster_names(names: &Value) {
    let mut rows = vec![["NAME", "KIND", "NODE"].map(String::from).to_vec()];
    for entry in names.as_array().into_iter().flatten() {
        rows.push(vec![
            cell(&entry["name"]),
            cell(&entry["kind"]),
            cell(&entry["node"]),
        ]);
    }
    print_table(&rows);
}

/// The answer of `plexus.subscriptions` as a table: the connection as `client[pid]`.
fn print_subscriptions(subs: &Value) {
    let mut rows = vec![
        ["PATTERN", "QUEUE", "CONNECTION"]
            .map(String::from)
            .to_vec(),
    ];
    for sub in subs.as_array().into_iter().flatten() {
        let connection = match &sub["pid"] {
            Value::Null => format!("{}[conn {}]", cell(&sub["client"]), cell(&sub["conn_id"])),
            pid => format!("{}[{}]", cell(&sub["client"]), cell(pid)),
        };
        rows.push(vec![cell(&sub["pattern"]), cell(&sub["queue"]), connection]);
    }
    print_table(&rows);
}

/// `plexus wait NAME... --timeout T`.
#[derive(Args, Debug)]
pub struct WaitArgs {
    /// Names that must all be registered.
    #[arg(required = true)]
    names: Vec<String>,
    /// How long to wait.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
}

/// Runs `plexus wait`.
pub async fn wait(args: WaitArgs, g: Global) -> Result<u8, Failure> {
    let client = g.connect("wait").await?;
    let names: Vec<&str> = args.names.iter().map(String::as_str).collect();
    client.wait_for(&names, args.timeout).await?;
    if g.json {
        println!("{}", json!({ "names": args.names }));
    }
    Ok(OK)
}

/// `plexus introspect OBJECT`.
#[derive(Args, Debug)]
pub struct IntrospectArgs {
    /// The object (`plexus` describes the broker itself).
    object: String,
    /// Print reference docs for the object in Markdown: methods, descriptions, schemas, topics.
    #[arg(long)]
    markdown: bool,
}

/// A method's signature from its description: `signature`, else `params -> result`.
fn signature(detail: &Value) -> String {
    if let Some(sig) = detail["signature"].as_str() {
        return sig.to_owned();
    }
    if let Some(sig) = crate::contract_view::signature(detail) {
        return sig;
    }
    let part = |v: &Value| match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    match (part(&detail["params"]), part(&detail["result"])) {
        (None, None) => "-".to_owned(),
        (params, result) => format!(
            "{} -> {}",
            params.unwrap_or_else(|| "?".into()),
            result.unwrap_or_else(|| "?".into())
        ),
    }
}

/// Runs `plexus introspect`: the methods the object declared when it registered, as a table of
/// method, signature and description, or the broker's JSON.
pub async fn introspect(args: IntrospectArgs, g: Global) -> Result<u8, Failure> {
    let client = g.connect("introspect").await?;
    let params = json!({ "name": args.object }).to_string();
    let raw = client
        .call_raw(
            "plexus",
            "introspect",
            params.as_bytes(),
            Duration::from_secs(30),
        )
        .await?;
    if g.json {
        println!("{}", json_text(&raw));
        return Ok(OK);
    }
    let info: Value = serde_json::from_slice(&raw).map_err(plexus_client::Error::from)?;
    if args.markdown {
        print!("{}", crate::contract_view::markdown(&args.object, &info));
        return Ok(OK);
    }
    println!(
        "{} ({}, {} owner(s))",
        args.object,
        info["kind"].as_str().unwrap_or("?"),
        cell(&info["owners"])
    );
    match info["description"]["methods"].as_object() {
        Some(methods) if !methods.is_empty() => {
            let mut rows = vec![
                ["METHOD", "SIGNATURE", "DESCRIPTION"]
                    .map(String::from)
                    .to_vec(),
            ];
            for (name, detail) in methods {
                let description = detail["description"]
                    .as_str()
                    .or_else(|| detail["doc"].as_str())
                    .unwrap_or("-");
                let description = if detail["deprecated"] == Value::Bool(true) {
                    format!("(deprecated) {description}")
                } else {
                    description.to_owned()
                };
                rows.push(vec![name.clone(), signature(detail), description]);
            }
            print_table(&rows);
            let schemas = crate::contract_view::schema_lines(&info["description"]);
            if !schemas.is_empty() {
                println!("\nschemas (JSON Schema 2020-12):");
                for line in schemas {
                    println!("  {line}");
                }
            }
        }
        _ => println!(
            "(no methods declared: the object may still answer any method; try `plexus call {} METHOD`)",
            args.object
        ),
    }
    Ok(OK)
}
