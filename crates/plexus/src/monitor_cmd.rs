//! `plexus monitor [PATTERN]`: every call, answer, error and event the broker routes, with
//! timing, from the broker's `plexus.monitor.*` feed (its records are in `docs/protocol.md`).
//!
//! The broker's records name everything a line shows: the call an answer or a broker error ends
//! (`object`, `method`, `call_id`) and each connection's client name and pid, shown as
//! `client[pid]` (`client#N` without a pid, `conn N` without a name).

use std::collections::BTreeMap;

use clap::Args;
use plexus_proto::{topic_matches, validate_pattern};
use serde_json::value::RawValue;

use crate::bus::{Global, ReconnectArgs, stop_signal};
use crate::exit::{Failure, INVALID_ARGS, OK};
use crate::output::compact;

/// `plexus monitor [PATTERN]`.
#[derive(Args, Debug)]
#[command(after_help = MONITOR_HELP)]
pub struct MonitorArgs {
    /// Only traffic whose `object.method` or topic matches (`*` one segment, `>` the rest).
    pattern: Option<String>,
    /// Exit after N records.
    #[arg(short = 'c', long, value_name = "N")]
    count: Option<u64>,
    #[command(flatten)]
    reconnect: ReconnectArgs,
}

const MONITOR_HELP: &str = "\
Each line names its call (OBJECT.METHOD #CALL_ID) or topic. Errors the broker answers a call with
(a timeout, the worker gone) name the call they end. Connections show as client[pid]. With --json
each line is the broker's record as it is (docs/protocol.md, `The monitor feed`).";

/// One record of the feed, its fields as the broker wrote them.
struct Record(BTreeMap<String, Box<RawValue>>);

impl Record {
    fn raw(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.get())
    }

    fn str(&self, key: &str) -> Option<String> {
        self.raw(key)
            .and_then(|r| serde_json::from_str::<String>(r).ok())
    }

    fn u64(&self, key: &str) -> Option<u64> {
        self.raw(key).and_then(|r| r.parse().ok())
    }

    fn shown(&self, key: &str) -> String {
        self.raw(key).map_or_else(|| "null".to_owned(), compact)
    }
}

impl Record {
    /// The connection in field `field` (`from` or `to`) as `client[pid]`, `client#N` without a
    /// pid, or `conn N` without a client name.
    fn party(&self, field: &str) -> String {
        let conn = self.u64(field).unwrap_or(0);
        match (
            self.str(&format!("{field}_client"))
                .filter(|c| !c.is_empty()),
            self.u64(&format!("{field}_pid")),
        ) {
            (Some(client), Some(pid)) => format!("{client}[{pid}]"),
            (Some(client), None) => format!("{client}#{conn}"),
            (None, _) => format!("conn {conn}"),
        }
    }

    /// The call it names, as `OBJECT.METHOD`, when it names one.
    fn subject(&self) -> Option<String> {
        Some(format!("{}.{}", self.str("object")?, self.str("method")?))
    }
}

fn clock(ts_us: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        ts_us / 3_600_000_000 % 24,
        ts_us / 60_000_000 % 60,
        ts_us / 1_000_000 % 60,
        ts_us % 1_000_000
    )
}

/// Runs `plexus monitor` until interrupted or `--count` records.
pub async fn monitor(args: MonitorArgs, g: Global) -> Result<u8, Failure> {
    if let Some(pattern) = &args.pattern {
        validate_pattern(pattern).map_err(|e| {
            Failure::new(INVALID_ARGS, format!("{pattern:?} is not a pattern: {e}"))
        })?;
    }
    let (client, mut watch) = g.connect_long("monitor", &args.reconnect).await?;
    let mut feed = client.subscribe("plexus.monitor.*").await?;
    if !g.json {
        eprintln!("monitoring {} (ctrl-c to stop)", client.address());
    }
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut printed = 0u64;
    while args.count.is_none_or(|n| printed < n) {
        let event = tokio::select! {
            e = feed.next() => e,
            () = &mut stop => return Ok(OK),
            failure = watch.failure() => return Err(failure),
        };
        let Some(event) = event else {
            return Err(watch.ended().await);
        };
        let Ok(map) = serde_json::from_slice(&event.payload) else {
            continue;
        };
        let record = Record(map);
        let Some(line) = describe(&record, args.pattern.as_deref()) else {
            continue;
        };
        if g.json {
            println!("{}", serde_json::to_string(&record.0).unwrap_or_default());
        } else {
            println!("{line}");
        }
        printed += 1;
    }
    Ok(OK)
}

/// The line for a record; `None` when `pattern` filters it out.
fn describe(record: &Record, pattern: Option<&str>) -> Option<String> {
    let time = clock(record.u64("ts_us").unwrap_or(0));
    let kind = record.str("kind").unwrap_or_default();
    let matches = |subject: &str| pattern.is_none_or(|p| topic_matches(p, subject));
    match kind.as_str() {
        "call" => {
            let subject = record.subject().unwrap_or_default();
            if !matches(&subject) {
                return None;
            }
            Some(format!(
                "{time} call   {subject} #{} {} from {} to {}, timeout {} ms",
                record.u64("call_id").unwrap_or(0),
                record.shown("params"),
                record.party("from"),
                record.party("to"),
                record.u64("timeout_ms").unwrap_or(0)
            ))
        }
        "reply" | "error" if record.raw("from") != Some("\"broker\"") => {
            let subject = record.subject();
            if pattern.is_some() && !subject.as_deref().is_some_and(matches) {
                return None;
            }
            let subject = subject.unwrap_or_else(|| "(a call made before monitoring)".to_owned());
            let id = record.u64("call_id").unwrap_or(0);
            let elapsed = record.u64("elapsed_us").unwrap_or(0);
            Some(if kind == "reply" {
                format!(
                    "{time} reply  {subject} #{id} answered in {elapsed} µs: {}",
                    record.shown("result")
                )
            } else {
                format!(
                    "{time} error  {subject} #{id} failed in {elapsed} µs, the worker answered {}: {}",
                    record.str("code").unwrap_or_default(),
                    record.str("message").unwrap_or_default()
                )
            })
        }
        "error" => {
            let subject = record.subject();
            if pattern.is_some() && !subject.as_deref().is_some_and(matches) {
                return None;
            }
            let who = record.party("to");
            let code = record.str("code").unwrap_or_default();
            let message = record.str("message").unwrap_or_default();
            Some(match (subject, record.u64("call_id")) {
                (subject, Some(id)) => {
                    let subject =
                        subject.unwrap_or_else(|| "(a call made before monitoring)".to_owned());
                    format!(
                        "{time} error  {subject} #{id} failed, the broker answered {who} {code}: {message}"
                    )
                }
                (Some(subject), None) => format!(
                    "{time} error  {subject} refused, the broker answered {who} {code}: {message}"
                ),
                (None, None) => format!(
                    "{time} error  request #{} of {who} refused by the broker, {code}: {message}",
                    record.u64("id").unwrap_or(0)
                ),
            })
        }
        "event" => {
            let topic = record.str("topic").unwrap_or_default();
            if !matches(&topic) {
                return None;
            }
            let delivered = record.u64("delivered").unwrap_or(0);
            let dropped = record.u64("dropped").unwrap_or(0);
            let dropped = if dropped > 0 {
                format!(" ({dropped} dropped: their queues were full)")
            } else {
                String::new()
            };
            Some(format!(
                "{time} event  {topic} {} published by {}, delivered to {delivered} subscription(s){dropped}",
                record.shown("data"),
                record.party("from")
            ))
        }
        _ => Some(format!(
            "{time} {kind} {}",
            serde_json::to_string(&record.0).unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(text: &str) -> Record {
        Record(serde_json::from_str(text).expect("a record"))
    }

    #[test]
    fn connections_show_as_client_and_pid() {
        let r =
            record(r#"{"from":3,"from_client":"w","from_pid":42,"to":4,"to_client":"c","x":5}"#);
        assert_eq!(r.party("from"), "w[42]");
        assert_eq!(r.party("to"), "c#4");
        assert_eq!(r.party("x"), "conn 5");
    }

    #[test]
    fn broker_errors_name_their_call_and_a_pattern_filters_by_it() {
        let timeout = record(
            r#"{"kind":"error","from":"broker","to":3,"to_client":"c","to_pid":9,"id":7,"call_id":12,"object":"slow","method":"work","code":"timeout","message":"no reply"}"#,
        );
        let line = describe(&timeout, Some("*.work")).expect("shown");
        assert!(
            line.ends_with("slow.work #12 failed, the broker answered c[9] timeout: no reply"),
            "{line}"
        );
        assert!(describe(&timeout, Some("fast.*")).is_none());
        let other = record(
            r#"{"kind":"error","from":"broker","to":3,"id":7,"code":"invalid_params","message":"bad pattern"}"#,
        );
        assert!(describe(&other, Some(">")).is_none());
        assert!(
            describe(&other, None)
                .expect("shown")
                .contains("request #7 of conn 3 refused by the broker")
        );
    }
}
