//! `plexus __bench-helper ROLE`: the processes a bench runs besides itself — an echo worker, a
//! subscriber that counts, and the floors' echo and relay. Each prints `ready` once serving and
//! exits when its stdin closes.

use clap::{Args, Subcommand};
use plexus_client::{CallContext, Error, Object};
use serde_json::Value;
use serde_json::value::RawValue;

use super::socket_floor;
use crate::bus::Global;
use crate::exit::{Failure, INTERNAL, OK};

/// `plexus __bench-helper`.
#[derive(Args, Debug)]
pub struct HelperArgs {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand, Debug)]
enum Role {
    /// Serve NAME, answering every call with its params.
    EchoWorker { name: String },
    /// Serve NAME, answering every call with its params as they came, nothing parsed or read
    /// (payload): a memfd payload goes back to the caller unread.
    RawEchoWorker { name: String },
    /// Serve NAME like echo-worker, under a contract whose method `echo` checks its params and
    /// result against the schema `rpc-validated` uses.
    CheckedEchoWorker { name: String },
    /// Subscribe to TOPIC and count events; on the first event `"end"`, print the count (the
    /// bench repeats the end marker until every subscriber answered).
    Subscriber { topic: String },
    /// Echo SIZE-byte messages on a plain socket at ADDR (unix:PATH or tcp:HOST:PORT).
    FloorEcho { addr: String, size: usize },
    /// Copy bytes between clients at ADDR and UPSTREAM.
    Relay { addr: String, upstream: String },
}

/// The echo worker's object.
struct Echo;

impl Object for Echo {
    async fn call(
        &self,
        _method: &str,
        params: &RawValue,
        _ctx: &CallContext,
    ) -> Result<Value, Error> {
        Ok(serde_json::from_str(params.get())?)
    }
}

/// Exits the process once stdin ends: the bench closed it, or the bench died.
fn exit_with_stdin() {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0)
    });
}

/// Runs one helper role until its stdin closes.
pub async fn run(args: HelperArgs, g: Global) -> Result<u8, Failure> {
    exit_with_stdin();
    let io_failure = |e: std::io::Error| Failure::new(INTERNAL, e.to_string());
    match args.role {
        Role::EchoWorker { name } => {
            let client = g.connect("bench-worker").await?;
            client.serve(&name, Echo).await?;
            println!("ready");
            std::future::pending::<()>().await;
        }
        Role::RawEchoWorker { name } => {
            let client = g.connect("bench-worker").await?;
            client
                .serve_payload(&name, |_method, params| async move { Ok(params) })
                .await?;
            println!("ready");
            std::future::pending::<()>().await;
        }
        Role::CheckedEchoWorker { name } => {
            let client = g.connect("bench-worker").await?;
            let schema = super::rpc_validated::schema();
            client
                .serve_with(&name, Echo)
                .method("echo", schema.clone(), schema)
                .await?;
            println!("ready");
            std::future::pending::<()>().await;
        }
        Role::Subscriber { topic } => {
            let client = g.connect("bench-subscriber").await?;
            let mut events = client.subscribe(&topic).await?;
            println!("ready");
            let (mut count, mut told) = (0u64, false);
            while let Some(event) = events.next().await {
                if &event.payload[..] != b"\"end\"" {
                    count += 1;
                } else if !told {
                    println!("{count}");
                    told = true;
                }
            }
        }
        Role::FloorEcho { addr, size } => {
            socket_floor::serve_echo(&addr, size).map_err(io_failure)?;
            println!("ready");
            std::future::pending::<()>().await;
        }
        Role::Relay { addr, upstream } => {
            socket_floor::serve_relay(&addr, &upstream).map_err(io_failure)?;
            println!("ready");
            std::future::pending::<()>().await;
        }
    }
    Ok(OK)
}
