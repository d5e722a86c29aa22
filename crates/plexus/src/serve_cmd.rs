//! `plexus serve NAME -- COMMAND...`: serves NAME by running COMMAND for each call (like
//! `nats reply --command`): the params go to its stdin, its stdout is the result.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use plexus_client::{CallContext, Client, Error, ErrorCode, Object};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::bus::{Global, ReconnectArgs, parse_duration, stop_signal};
use crate::exit::{Failure, INVALID_ARGS, OK};
use crate::watch::Watch;

/// `plexus serve NAME [--shared] [--timeout T] -- COMMAND [ARGS...]`.
#[derive(Args, Debug)]
#[command(after_help = SERVE_HELP)]
pub struct ServeArgs {
    /// The name to serve.
    name: String,
    /// The command to run for each call, and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
    /// Join the name's queue group instead of owning it alone.
    #[arg(long)]
    shared: bool,
    /// Kill the command and answer `internal` when it runs longer than this, if that is shorter
    /// than the call's timeout (at the call's timeout the caller is answered `timeout` and the
    /// command killed).
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    #[command(flatten)]
    reconnect: ReconnectArgs,
}

const SERVE_HELP: &str = "\
Each call runs COMMAND with the params as JSON on its stdin, and PLEXUS_OBJECT, PLEXUS_METHOD and
PLEXUS_TIMEOUT_MS in its environment. Exit 0: its stdout is the result (JSON if it is JSON, else
its text as a string, nothing is null). Another exit: the call fails with `internal`, its stderr as
the message. A command still running at the timeout, or when the caller gives up, is killed.
Example: plexus serve upper -- tr a-z A-Z";

/// Runs the command for each call.
struct Command {
    name: String,
    argv: Vec<String>,
    timeout: Option<Duration>,
}

impl Object for Command {
    async fn call(
        &self,
        method: &str,
        params: &RawValue,
        ctx: &CallContext,
    ) -> Result<Value, Error> {
        // Only a `--timeout` shorter than the call's needs a timer of its own: at the call's
        // timeout the broker answers the caller `timeout` and cancels the call, which kills the
        // command below (a second timer for the same moment raced the broker's, and the caller
        // got `internal` instead of `timeout` when this one fired first).
        let own_limit = self.timeout.filter(|t| *t < ctx.timeout());
        let limit = own_limit.unwrap_or(ctx.timeout());
        let program = &self.argv[0];
        let mut child = tokio::process::Command::new(program)
            .args(&self.argv[1..])
            .env("PLEXUS_OBJECT", &self.name)
            .env("PLEXUS_METHOD", method)
            .env("PLEXUS_TIMEOUT_MS", limit.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                Error::remote(ErrorCode::Internal, format!("cannot run {program}: {e}"))
            })?;
        // The command runs in a process group of its own, so that what it started dies with it.
        let group = child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32));
        let kill_group = || {
            if let Some(group) = group {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            let params = params.get().as_bytes().to_vec();
            tokio::spawn(async move {
                // A command that does not read its stdin closes it: that is its business.
                let _ = stdin.write_all(&params).await;
            });
        }
        let output = tokio::select! {
            output = child.wait_with_output() => output.map_err(|e| {
                Error::remote(ErrorCode::Internal, format!("waiting for {program}: {e}"))
            })?,
            () = sleep_or_never(own_limit) => {
                kill_group();
                return Err(Error::remote(
                    ErrorCode::Internal,
                    format!("{program} did not finish within {} ms; it was killed", limit.as_millis()),
                ));
            }
            () = ctx.cancelled() => {
                kill_group();
                return Err(Error::remote(ErrorCode::Internal, "the caller gave up; the command was killed"));
            }
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr)
                .trim_end()
                .to_owned();
            let status = output.status.code();
            let message = if stderr.is_empty() {
                match status {
                    Some(code) => format!("{program} exited with status {code}"),
                    None => format!("{program} was killed by a signal"),
                }
            } else {
                stderr.clone()
            };
            return Err(Error::Remote {
                code: ErrorCode::Internal,
                message,
                data: Some(json!({ "exit_status": status, "stderr": stderr })),
            });
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let text = stdout.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())))
    }
}

/// Whether `program` can be run: a path to a file, or a name found on PATH.
fn runnable(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Runs `plexus serve` until interrupted.
pub async fn serve(args: ServeArgs, g: Global) -> Result<u8, Failure> {
    let program = &args.command[0];
    if !runnable(program) {
        return Err(Failure::new(
            INVALID_ARGS,
            format!("cannot run {program:?}: no such file, and not found on PATH"),
        ));
    }
    let (client, watch) = g.connect_long("serve", &args.reconnect).await?;
    let object = Command {
        name: args.name.clone(),
        argv: args.command.clone(),
        timeout: args.timeout,
    };
    if args.shared {
        client.serve_shared(&args.name, object).await?;
    } else {
        client.serve(&args.name, object).await?;
    }
    serve_until_stopped(&client, watch, &args.name, &g).await
}

/// Says what is served, then serves until SIGINT or SIGTERM (exit 0), or until the watch says
/// the command must end.
pub async fn serve_until_stopped(
    client: &Client,
    mut watch: Watch,
    name: &str,
    g: &Global,
) -> Result<u8, Failure> {
    if g.json {
        println!(
            "{}",
            json!({ "serving": name, "bus": client.address().to_string() })
        );
    } else {
        println!("serving {name} on {}", client.address());
    }
    tokio::select! {
        () = stop_signal() => Ok(OK),
        failure = watch.failure() => Err(failure),
    }
}

/// Sleeps for `limit`, or forever without one.
async fn sleep_or_never(limit: Option<Duration>) {
    match limit {
        Some(limit) => tokio::time::sleep(limit).await,
        None => std::future::pending().await,
    }
}
