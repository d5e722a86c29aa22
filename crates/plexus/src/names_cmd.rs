//! `plexus list` and `plexus wait`: the names on the bus.

use std::time::Duration;

use clap::Args;
use serde_json::Value;

use crate::bus::{BusArgs, parse_duration};
use crate::call_cmd::print_json;
use crate::exit::{Failure, OK};

/// `plexus list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print the broker's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bus: BusArgs,
}

impl ListArgs {
    /// Whether errors go out as JSON.
    pub fn json(&self) -> bool {
        self.json
    }
}

/// Runs `plexus list`.
pub async fn list(args: ListArgs) -> Result<u8, Failure> {
    let client = args.bus.connect().await?;
    let names: Value = client.call("plexus", "list", &()).await?;
    if args.json {
        print_json(&names, false);
        return Ok(OK);
    }
    let mut rows = vec![
        [
            "NAME", "KIND", "CONN", "PID", "UID", "CALLS", "CLIENT", "EXE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for entry in names.as_array().into_iter().flatten() {
        for owner in entry["owners"].as_array().into_iter().flatten() {
            let text = |v: &Value| match v {
                Value::Null => "-".to_owned(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            rows.push(vec![
                text(&entry["name"]),
                text(&entry["kind"]),
                text(&owner["conn_id"]),
                text(&owner["pid"]),
                text(&owner["uid"]),
                text(&entry["calls_served"]),
                text(&owner["client"]),
                text(&owner["exe"]),
            ]);
        }
    }
    print_table(&rows);
    Ok(OK)
}

/// Prints rows as left-aligned columns.
pub fn print_table(rows: &[Vec<String>]) {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
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
    #[command(flatten)]
    bus: BusArgs,
}

/// Runs `plexus wait`.
pub async fn wait(args: WaitArgs) -> Result<u8, Failure> {
    let client = args.bus.connect().await?;
    let names: Vec<&str> = args.names.iter().map(String::as_str).collect();
    client.wait_for(&names, args.timeout).await?;
    Ok(OK)
}

/// `plexus introspect OBJECT`.
#[derive(Args, Debug)]
pub struct IntrospectArgs {
    /// The object (`plexus` describes the broker itself).
    object: String,
    /// Print the broker's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bus: BusArgs,
}

impl IntrospectArgs {
    /// Whether errors go out as JSON.
    pub fn json(&self) -> bool {
        self.json
    }
}

/// Runs `plexus introspect`: the methods the object declared when it registered.
pub async fn introspect(args: IntrospectArgs) -> Result<u8, Failure> {
    let client = args.bus.connect().await?;
    let info: Value = client
        .call(
            "plexus",
            "introspect",
            &serde_json::json!({ "name": args.object }),
        )
        .await?;
    if args.json {
        print_json(&info, false);
        return Ok(OK);
    }
    println!(
        "{} ({}, {} owner(s))",
        args.object,
        info["kind"].as_str().unwrap_or("?"),
        info["owners"]
    );
    match info["description"]["methods"].as_object() {
        Some(methods) if !methods.is_empty() => {
            for (name, detail) in methods {
                match detail.as_object() {
                    Some(d) if !d.is_empty() => println!("  {name}  {detail}"),
                    _ => println!("  {name}"),
                }
            }
        }
        _ => println!("  (no methods declared)"),
    }
    Ok(OK)
}
