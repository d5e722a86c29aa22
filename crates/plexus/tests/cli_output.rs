//! One meaning per flag and seeing what happens: --json on every command, -c/--count on every
//! streaming one, monitor lines that name their call, exit codes that say what failed, ping's
//! summary after ctrl-c, and logs that stay on stderr and out of the way.

mod cli_support;

use cli_support::{Bus, stderr, stdout};
use serde_json::Value;

/// Every stdout line of `plexus ARGS --json`, each of which must be JSON.
fn json_lines(bus: &Bus, args: &[&str]) -> Vec<Value> {
    let mut full = args.to_vec();
    full.push("--json");
    let out = bus.run(&full);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{args:?}: {l:?} is not JSON: {e}"))
        })
        .collect()
}

#[test]
fn json_is_the_output_format_of_every_command() {
    let bus = Bus::start();
    let echo = bus.spawn(&["echo", "--name", "echo", "--json"]);
    let banner: Value = serde_json::from_str(&echo.out.next()).expect("the banner is JSON");
    assert_eq!(banner["serving"], "echo");

    assert_eq!(json_lines(&bus, &["list"])[0][0]["name"], "echo");
    assert_eq!(json_lines(&bus, &["stats"])[0]["names"], 1);
    assert_eq!(
        json_lines(&bus, &["introspect", "plexus"])[0]["name"],
        "plexus"
    );
    assert_eq!(json_lines(&bus, &["call", "echo.m", "a=1"])[0]["a"], "1");
    assert_eq!(json_lines(&bus, &["wait", "echo"])[0]["names"][0], "echo");
    assert_eq!(
        json_lines(&bus, &["publish", "t", "x", "--ack", "-c", "2"])[0]["events"],
        2
    );
    let pings = json_lines(&bus, &["ping", "-c", "2", "--interval", "1ms"]);
    assert_eq!(pings.len(), 3, "a line per pong and the summary");
    assert_eq!(pings[2]["pongs"], 2);
    let doctor = &json_lines(&bus, &["doctor"])[0];
    assert_eq!(doctor["ok"], true);
    assert_eq!(
        doctor["socket"].as_str(),
        bus.socket().to_str(),
        "doctor --json names the socket: {doctor}"
    );
    assert_eq!(json_lines(&bus, &["version"])[0]["version"], "0.1.0");
    assert!(json_lines(&bus, &["envinfo"])[0]["bus"].is_string());
}

#[test]
fn every_streaming_command_takes_count() {
    let bus = Bus::start();
    for command in ["listen", "monitor", "ping", "publish"] {
        let help = stdout(&bus.run(&[command, "--help"]));
        assert!(help.contains("-c, --count <N>"), "{command} --help: {help}");
    }
    let mut monitor = bus.spawn(&["monitor", "-c", "2"]);
    bus.wait_subscriptions(1);
    assert!(bus.run(&["publish", "a", "1", "-c", "2"]).status.success());
    assert_eq!(
        monitor.wait().code(),
        Some(0),
        "monitor -c 2 exits after two records"
    );
    let lines = monitor.out.rest();
    assert_eq!(lines.len(), 2, "{lines:?}");
}

#[test]
fn monitor_names_the_call_a_timeout_ends_and_who_took_part() {
    let bus = Bus::start();
    let slow = bus.spawn(&["serve", "slow", "--", "sleep", "30"]);
    slow.out.until("serving slow");
    let monitor = bus.spawn(&["monitor", "*.work"]);
    bus.wait_subscriptions(1);

    let out = bus.run(&["call", "slow.work", "job=1", "--timeout", "200ms"]);
    assert_eq!(out.status.code(), Some(124));
    let call = monitor.out.next();
    assert!(call.contains(" call   slow.work #"), "{call}");
    let id = call
        .split('#')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a call id")
        .to_owned();
    assert!(
        call.contains(&format!("to plexus-serve[{}]", slow.child.id())),
        "the worker as client[pid]: {call}"
    );
    let timeout = monitor.out.next();
    assert!(
        timeout.contains(&format!("error  slow.work #{id} failed"))
            && timeout.contains("timeout: no reply within 200 ms"),
        "the broker's timeout names its call: {timeout}"
    );

    assert_eq!(bus.run(&["call", "far.away.work"]).status.code(), Some(69));
    assert_eq!(bus.run(&["call", "missing.work"]).status.code(), Some(69));
    let refused = monitor.out.next();
    assert!(
        refused.contains("no_such_object") && refused.contains("'missing'"),
        "a refused call shows when its object may match, others do not: {refused}"
    );

    let events = bus.spawn(&["monitor", "news.>", "-c", "1"]);
    bus.wait_subscriptions(2);
    assert!(
        bus.run(&["publish", "news.today", "quiet"])
            .status
            .success()
    );
    let event = events.out.next();
    assert!(
        event.contains("event  news.today \"quiet\" published by")
            && event.ends_with("delivered to 0 subscription(s)"),
        "an event reads as a sentence: {event}"
    );
}

#[test]
fn exit_codes_tell_a_failed_method_from_a_broken_bus() {
    let bus = Bus::start();
    let failing = bus.spawn(&[
        "serve",
        "fail",
        "--",
        "sh",
        "-c",
        "echo 'no such account' >&2; exit 3",
    ]);
    failing.out.until("serving fail");
    let out = bus.run(&["call", "fail.charge", "account=42"]);
    assert_eq!(out.status.code(), Some(2), "the method failed");
    assert!(
        stderr(&out).contains("fail.charge failed: internal: no such account"),
        "{}",
        stderr(&out)
    );
    let out = bus.run(&["--json", "call", "fail.charge"]);
    let error: Value = serde_json::from_slice(&out.stderr).expect("JSON error");
    assert_eq!(error["error"]["exit"], 2);
    assert_eq!(error["error"]["data"]["exit_status"], 3);

    let plexus_refuses = bus.run(&["call", "plexus.introspect", "n:=1"]);
    assert_eq!(
        plexus_refuses.status.code(),
        Some(64),
        "the broker's own invalid_params is an invalid argument"
    );
}

#[test]
fn a_call_pending_when_the_broker_stops_exits_75() {
    let mut bus = Bus::start();
    let slow = bus.spawn(&["serve", "slow", "--", "sleep", "30"]);
    slow.out.until("serving slow");
    let mut call = bus.spawn(&["call", "slow.work"]);
    let deadline = std::time::Instant::now() + cli_support::WAIT;
    while bus.stats()["pending_calls"] != 1 {
        assert!(std::time::Instant::now() < deadline, "the call is pending");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    bus.stop_broker();
    assert_eq!(call.wait().code(), Some(75));
    let said = call.err.rest().join("\n");
    assert!(said.contains("shutting_down"), "{said}");
}

#[test]
fn ctrl_c_during_ping_prints_the_summary_so_far() {
    let bus = Bus::start();
    let mut ping = bus.spawn(&["ping", "-c", "100", "--interval", "20ms"]);
    assert!(ping.out.next().starts_with("broker "));
    ping.out.until("pong 1:");
    ping.out.until("pong 2:");
    ping.signal(rustix::process::Signal::INT);
    assert_eq!(ping.wait().code(), Some(0));
    let summary = ping.out.until("min/avg/max");
    assert!(summary.contains("pong(s)"), "{summary}");
}

#[test]
fn logs_stay_on_stderr_and_the_broker_is_quiet_by_default() {
    let mut bus = Bus::start();
    let mut verbose = bus.spawn(&["-v", "listen", "t", "-c", "1"]);
    bus.wait_subscriptions(1);
    bus.stop_broker();
    let log_line = verbose.err.until("connection to the broker lost");
    assert!(
        log_line.contains("WARN"),
        "-v shows the client's log on stderr: {log_line}"
    );
    bus.start_broker();
    verbose.err.until("reconnected");
    bus.wait_subscriptions(1);
    assert!(bus.run(&["publish", "t", "x"]).status.success());
    assert_eq!(verbose.wait().code(), Some(0));
    assert_eq!(verbose.out.rest(), ["t \"x\""], "stdout is the events only");

    bus.stop_broker();
    let log = bus.broker_log();
    assert_eq!(
        log.matches("listening").count(),
        2,
        "once per start of the broker: {log}"
    );
    assert!(
        !log.contains("connection opened"),
        "connections are debug: {log}"
    );
    assert!(!log.contains("INFO"), "{log}");

    let socket = bus.dir.path().join("verbose.sock");
    let mut broker = cli_support::plexus()
        .args(["broker", "-vv", "--socket"])
        .arg(&socket)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("broker");
    let deadline = std::time::Instant::now() + cli_support::WAIT;
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(std::time::Instant::now() < deadline, "the broker started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let ping = cli_support::plexus()
        .args(["ping", "-c", "1", "--bus"])
        .arg(format!("unix:{}", socket.display()))
        .output()
        .expect("ping");
    assert!(ping.status.success());
    cli_support::signal(&broker, rustix::process::Signal::TERM);
    cli_support::wait_exit(&mut broker, "the -vv broker");
    let out = broker.wait_with_output().expect("broker output");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("connection opened"),
        "-vv shows connections"
    );
}
