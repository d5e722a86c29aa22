//! `plexus top`: the broker's connections and names as live tables in the terminal (like
//! nats-top), read from the dashboard's JSON API (`plexus broker --http ADDR`).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::bus::{Global, parse_duration, stop_signal};
use crate::exit::{self, Failure};
use crate::output::{cell, print_table};

/// How long one request to the API may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Flags of `plexus top`.
#[derive(Args, Debug)]
pub struct TopArgs {
    /// The broker's HTTP listener, as given to `plexus broker --http` (host:port)
    /// [default: $PLEXUS_HTTP, else 127.0.0.1:7777].
    #[arg(
        long,
        value_name = "ADDR",
        env = "PLEXUS_HTTP",
        default_value = "127.0.0.1:7777"
    )]
    http: String,
    /// Sort connections by: id, client, pid, connected_since, bytes_in, bytes_out, frames_in,
    /// frames_out, queued_bytes, dropped_events, pending_calls, subscriptions (largest first).
    #[arg(long, value_name = "KEY", default_value = "bytes_out")]
    sort: String,
    /// Rows in each table.
    #[arg(long, value_name = "N", default_value_t = 20)]
    limit: usize,
    /// Time between refreshes, e.g. 1s or 500ms.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Print the tables once and exit (with --json: one JSON object).
    #[arg(long)]
    once: bool,
}

/// The token to present (`--token-file`, else `$PLEXUS_TOKEN`), if any.
fn token(g: &Global) -> Result<Option<String>, Failure> {
    if let Some(path) = &g.token_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::new(
                exit::INVALID_ARGS,
                format!("cannot read token file {}: {e}", path.display()),
            )
        })?;
        return Ok(Some(text.trim().to_owned()));
    }
    Ok(std::env::var("PLEXUS_TOKEN").ok().filter(|t| !t.is_empty()))
}

/// `GET path` on the broker's HTTP listener, presenting `token`: the JSON it answers.
async fn get(addr: &str, path: &str, token: Option<&str>) -> Result<Value, Failure> {
    let unreachable = |e: &dyn std::fmt::Display| {
        Failure::new(
            exit::NO_BROKER,
            format!(
                "cannot read the broker's monitoring API at http://{addr}: {e}; start the broker with --http {addr}"
            ),
        )
    };
    let fetch = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(conn);
        let mut request = hyper::Request::get(path).header(hyper::header::HOST, addr);
        if let Some(token) = token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| Failure::new(exit::INVALID_ARGS, format!("bad address {addr}: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(&e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(&e))?
            .to_bytes();
        if !status.is_success() {
            let code = match status.as_u16() {
                401 | 403 => exit::PERMISSION_DENIED,
                _ => exit::TRANSPORT,
            };
            return Err(Failure::new(
                code,
                format!(
                    "GET http://{addr}{path} answered {status}: {}",
                    String::from_utf8_lossy(&body).trim()
                ),
            ));
        }
        serde_json::from_slice(&body).map_err(|e| {
            Failure::new(
                exit::TRANSPORT,
                format!("GET http://{addr}{path} did not answer JSON: {e}"),
            )
        })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fetch)
        .await
        .map_err(|_| unreachable(&format!("no answer within {REQUEST_TIMEOUT:?}")))?
}

/// What one refresh shows.
struct Snapshot {
    server: Value,
    connections: Value,
    names: Value,
}

async fn snapshot(args: &TopArgs, token: Option<&str>) -> Result<Snapshot, Failure> {
    let connections = format!(
        "/api/connections?sort={}&order=desc&limit={}",
        args.sort, args.limit
    );
    Ok(Snapshot {
        server: get(&args.http, "/api/server", token).await?,
        connections: get(&args.http, &connections, token).await?,
        names: get(
            &args.http,
            &format!("/api/names?limit={}", args.limit),
            token,
        )
        .await?,
    })
}

fn bytes(v: &Value) -> String {
    let n = v.as_f64().unwrap_or(0.0);
    if n < 1024.0 {
        format!("{n} B")
    } else if n < 1024.0 * 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    }
}

fn micros(v: &Value) -> String {
    match v.as_f64() {
        None => "-".to_owned(),
        Some(us) if us < 1000.0 => format!("{us:.0}us"),
        Some(us) if us < 1e6 => format!("{:.1}ms", us / 1000.0),
        Some(us) => format!("{:.2}s", us / 1e6),
    }
}

fn rate(v: &Value) -> String {
    format!("{:.0}", v.as_f64().unwrap_or(0.0))
}

/// Prints the summary line and the two tables.
fn print(s: &Snapshot) {
    let t = &s.server["totals"];
    let r = &s.server["rates"];
    println!(
        "plexus {}  pid {}  up {:.0}s  connections {}  names {}  subscriptions {}  pending {}",
        cell(&s.server["version"]),
        cell(&s.server["pid"]),
        s.server["uptime_s"].as_f64().unwrap_or(0.0),
        cell(&t["connections"]),
        cell(&t["names"]),
        cell(&t["subscriptions"]),
        cell(&t["pending_calls"]),
    );
    println!(
        "calls/s {}  errors/s {}  p50 {}  p99 {}  events/s {}  dropped events {}",
        rate(&r["calls_per_s"]),
        rate(&r["errors_per_s"]),
        micros(&r["p50_us"]),
        micros(&r["p99_us"]),
        rate(&r["events_per_s"]),
        cell(&t["events_dropped"]),
    );
    println!();
    let mut rows = vec![
        [
            "ID",
            "CLIENT",
            "PID",
            "BYTES_IN",
            "BYTES_OUT",
            "FRAMES_IN",
            "FRAMES_OUT",
            "QUEUED",
            "DROPPED",
            "PENDING",
            "NAMES",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for c in s.connections["connections"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let names: Vec<String> = c["names"]
            .as_array()
            .into_iter()
            .flatten()
            .map(cell)
            .collect();
        rows.push(vec![
            cell(&c["id"]),
            cell(&c["client"]),
            cell(&c["pid"]),
            bytes(&c["bytes_in"]),
            bytes(&c["bytes_out"]),
            cell(&c["frames_in"]),
            cell(&c["frames_out"]),
            bytes(&c["queued_bytes"]),
            cell(&c["dropped_events"]),
            cell(&c["pending_calls"]),
            names.join(","),
        ]);
    }
    println!(
        "connections (sorted by {}, {} of {})",
        cell(&s.connections["sort"]),
        rows.len() - 1,
        cell(&s.connections["total"])
    );
    print_table(&rows);
    println!();
    let mut rows = vec![
        [
            "NAME", "OWNERS", "KIND", "CALLS", "ERRORS", "P50", "P99", "METHODS",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for n in s.names["names"].as_array().into_iter().flatten() {
        let owners: Vec<String> = n["owners"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| format!("{}#{}", cell(&o["client"]), cell(&o["conn"])))
            .collect();
        let methods: Vec<String> = n["methods"]
            .as_array()
            .into_iter()
            .flatten()
            .map(cell)
            .collect();
        rows.push(vec![
            cell(&n["name"]),
            owners.join(","),
            if n["shared"] == true {
                "group"
            } else {
                "exclusive"
            }
            .to_owned(),
            cell(&n["calls_served"]),
            cell(&n["errors"]),
            micros(&n["p50_us"]),
            micros(&n["p99_us"]),
            if methods.is_empty() {
                "any".to_owned()
            } else {
                methods.join(",")
            },
        ]);
    }
    println!("names ({} of {})", rows.len() - 1, cell(&s.names["total"]));
    print_table(&rows);
}

/// Runs `plexus top` until interrupted (or once).
pub async fn top(args: TopArgs, g: Global) -> Result<u8, Failure> {
    let clear = !args.once && std::io::stdout().is_terminal();
    let token = token(&g)?;
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let s = snapshot(&args, token.as_deref()).await?;
        if g.json {
            let out = json!({
                "server": s.server,
                "connections": s.connections,
                "names": s.names,
            });
            println!("{out}");
        } else {
            if clear {
                print!("\x1b[H\x1b[2J");
            }
            print(&s);
        }
        let _ = std::io::stdout().flush();
        if args.once {
            return Ok(exit::OK);
        }
        tokio::select! {
            _ = &mut stop => return Ok(exit::OK),
            _ = tokio::time::sleep(args.interval) => {}
        }
    }
}
