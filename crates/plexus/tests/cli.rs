//! The `plexus` binary against a real broker process: argument forms, exit codes, listen,
//! list, wait, doctor, introspect, monitor, bench.

mod cli_support;

use std::process::Command;

use cli_support::{Bus, plexus, stderr, stdout, stdout_json};
use serde_json::{Value, json};

#[test]
fn call_accepts_json_key_value_and_signature_arguments() {
    let bus = Bus::start();
    let _echo = bus.echo("echo");
    let cases: &[(&[&str], Value)] = &[
        (&[r#"{"a":10,"b":32}"#], json!({"a":10,"b":32})),
        (&["a:=10", "b:=32"], json!({"a":10,"b":32})),
        (
            &["name=bob", "ok:=true", "x:=[1,2]"],
            json!({"name":"bob","ok":true,"x":[1,2]}),
        ),
        (&["{ii}", "a", "10", "b", "32"], json!({"a":10,"b":32})),
        (&["(ss)", "one", "two"], json!(["one", "two"])),
        (&["s", "text"], json!("text")),
        (&["i", "42"], json!(42)),
        (&["i", "-5"], json!(-5)),
        (&["-5"], json!(-5)),
        (&["n"], json!(null)),
        (&[], json!(null)),
    ];
    for (args, want) in cases {
        let mut full = vec!["call", "echo", "m"];
        full.extend_from_slice(args);
        let out = bus.run(&full);
        assert_eq!(stdout_json(&out), *want, "args {args:?}");
    }
    let out = bus.run(&["call", "echo", "m", "a:=1", "--json"]);
    assert_eq!(stdout(&out), "{\"a\":1}\n", "--json is one compact line");
}

#[test]
fn exit_codes_follow_the_table() {
    let bus = Bus::start();
    let _echo = bus.echo("echo");
    let code = |args: &[&str]| bus.run(args).status.code();

    assert_eq!(code(&["call", "nobody", "m"]), Some(69), "no such object");
    assert_eq!(
        code(&["call", "plexus", "nope"]),
        Some(69),
        "no such method"
    );
    assert_eq!(
        code(&["call", "echo", "m", "i", "ten"]),
        Some(64),
        "bad signature value"
    );
    assert_eq!(
        code(&["call", "echo", "m", "hello"]),
        Some(64),
        "unreadable args"
    );
    assert_eq!(code(&["bogus"]), Some(64), "unknown subcommand");
    assert_eq!(code(&["publish", "a.*", "n"]), Some(64), "wildcard topic");
    assert_eq!(
        code(&["echo", "--name", "plexus"]),
        Some(50),
        "permission denied"
    );
    let taken = bus.run(&["echo", "--name", "echo"]);
    assert_eq!(taken.status.code(), Some(73), "name taken");
    assert!(
        stderr(&taken).contains("name_taken") && stderr(&taken).contains("plexus list"),
        "{}",
        stderr(&taken)
    );
    let group = bus.spawn(&["echo", "--name", "group", "--shared"]);
    let first = group.out.next();
    assert!(first.starts_with("serving group"), "{first}");
    let taken = bus.run(&["echo", "--name", "group"]);
    assert_eq!(taken.status.code(), Some(73), "a group taken exclusively");
    assert!(
        stderr(&taken).contains("join it as a queue group member with --shared"),
        "{}",
        stderr(&taken)
    );
    let taken = bus.run(&["echo", "--name", "echo", "--shared"]);
    assert_eq!(taken.status.code(), Some(73), "an exclusive name joined");
    assert!(
        stderr(&taken).contains("not a queue group"),
        "{}",
        stderr(&taken)
    );
    assert_eq!(
        code(&["wait", "never", "--timeout", "100ms"]),
        Some(124),
        "wait timeout"
    );
    assert_eq!(
        code(&["listen", "quiet", "--timeout", "100ms"]),
        Some(124),
        "listen timeout"
    );

    let out = bus.run(&["call", "nobody", "m", "--json"]);
    let err: Value = serde_json::from_slice(&out.stderr).expect("JSON error on stderr");
    assert_eq!(err["error"]["name"], "no_such_object");
    assert_eq!(err["error"]["code"], 1);
    assert_eq!(err["error"]["data"]["object"], "nobody");
    assert_eq!(err["error"]["exit"], 69);

    let none = bus.dir.path().join("none.sock");
    let out = plexus()
        .args(["call", "x", "y", "--bus"])
        .arg(format!("unix:{}", none.display()))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "no broker");
    let text = stderr(&out);
    assert!(
        text.contains("no broker at") && text.contains("plexus broker"),
        "{text}"
    );

    let stranger = bus.dir.path().join("stranger.sock");
    let listener = std::os::unix::net::UnixListener::bind(&stranger).expect("bind");
    let server = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            use std::io::Write;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let out = plexus()
        .args(["ping", "--bus"])
        .arg(stranger.to_str().expect("utf8"))
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(3),
        "transport error: {}",
        stderr(&out)
    );
    server.join().expect("server");
}

#[test]
fn listen_prints_events_and_stops_after_count() {
    let bus = Bus::start();
    let mut json_listener = bus.spawn(&["listen", "sensor.>", "other", "--count", "2", "--json"]);
    let plain = bus.spawn(&["listen", "sensor.*", "-c", "1"]);
    bus.wait_subscriptions(3);
    assert!(
        bus.run(&["publish", "sensor.temp", "s", "25.6°C"])
            .status
            .success()
    );
    assert!(bus.run(&["publish", "other", "a=1"]).status.success());
    let first: Value = serde_json::from_str(&json_listener.out.next()).expect("json");
    assert_eq!(
        (first["topic"].as_str(), &first["data"]),
        (Some("sensor.temp"), &json!("25.6°C"))
    );
    assert!(
        first["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{first}"
    );
    let second: Value = serde_json::from_str(&json_listener.out.next()).expect("json");
    assert_eq!(second["data"], json!({"a":"1"}));
    assert_eq!(plain.out.next(), "sensor.temp \"25.6°C\"");
    assert!(json_listener.wait().success(), "listen exits after --count");
}

#[test]
fn list_subscriptions_shows_patterns_queues_and_connections() {
    let bus = Bus::start();
    let plain = bus.spawn(&["listen", "sensor.>", "alerts.*"]);
    let queued = bus.spawn(&["listen", "jobs.*", "--queue", "workers"]);
    bus.wait_subscriptions(3);
    let subs = stdout_json(&bus.run(&["list", "--subscriptions", "--json"]));
    let subs = subs.as_array().expect("an array");
    assert_eq!(subs.len(), 3, "{subs:?}");
    let jobs = subs
        .iter()
        .find(|s| s["pattern"] == "jobs.*")
        .expect("jobs.* is listed");
    assert_eq!(
        (&jobs["queue"], &jobs["client"], &jobs["pid"]),
        (
            &json!("workers"),
            &json!("plexus-listen"),
            &json!(queued.child.id())
        )
    );
    let text = stdout(&bus.run(&["list", "--subscriptions"]));
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows.first(),
        Some(&vec!["PATTERN", "QUEUE", "CONNECTION"]),
        "{text}"
    );
    let plain_conn = format!("plexus-listen[{}]", plain.child.id());
    let queued_conn = format!("plexus-listen[{}]", queued.child.id());
    for want in [
        vec!["sensor.>", "-", plain_conn.as_str()],
        vec!["alerts.*", "-", plain_conn.as_str()],
        vec!["jobs.*", "workers", queued_conn.as_str()],
    ] {
        assert!(rows.contains(&want), "{want:?} in {text}");
    }
}

#[test]
fn listeners_in_a_queue_group_share_the_events() {
    let bus = Bus::start();
    let mut a = bus.spawn(&["listen", "jobs.*", "--queue", "workers", "-c", "2"]);
    let mut b = bus.spawn(&["listen", "jobs.*", "-q", "workers", "-c", "2"]);
    bus.wait_subscriptions(2);
    for i in 0..4 {
        let n = format!("n={i}");
        assert!(bus.run(&["publish", "jobs.run", &n]).status.success());
    }
    assert!(
        a.wait().success() && b.wait().success(),
        "each got two of the four"
    );
    let mut got: Vec<String> = a.out.rest().into_iter().chain(b.out.rest()).collect();
    got.sort();
    assert_eq!(
        got,
        (0..4)
            .map(|i| format!("jobs.run {{\"n\":\"{i}\"}}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        bus.run(&["listen", "x", "--queue", "bad group"])
            .status
            .code(),
        Some(64)
    );
}

#[test]
fn listen_with_count_and_timeout_exits_0_once_its_events_came() {
    let bus = Bus::start();
    let mut listener = bus.spawn(&["listen", "job.done", "--count", "1", "--timeout", "10s"]);
    bus.wait_subscriptions(1);
    assert!(bus.run(&["publish", "job.done", "ok"]).status.success());
    assert_eq!(listener.out.next(), "job.done \"ok\"");
    assert_eq!(listener.wait().code(), Some(0));
}

#[test]
fn list_wait_stats_ping_and_doctor() {
    let bus = Bus::start();
    let mut waiting = bus.spawn(&["wait", "svc", "--timeout", "10s"]);
    let _svc = bus.echo("svc");
    assert!(
        waiting.wait().success(),
        "wait returned once svc registered"
    );
    let list = stdout_json(&bus.run(&["list", "--json"]));
    assert_eq!(list[0]["name"], "svc");
    assert_eq!(list[0]["owners"][0]["client"], "plexus-echo");
    let text = stdout(&bus.run(&["list"]));
    assert!(
        text.starts_with("NAME") && text.contains("svc") && text.contains("exclusive"),
        "{text}"
    );
    let stats = stdout_json(&bus.run(&["stats", "--json"]));
    assert_eq!(stats["names"], 1);
    let table = stdout(&bus.run(&["stats"]));
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["names", "1"]),
        "stats prints one counter per line: {table}"
    );
    let ping = bus.run(&["ping", "-c", "2", "--interval", "1ms"]);
    assert!(ping.status.success());
    assert!(stdout(&ping).contains("min/avg/max"));
    let doctor = bus.run(&["doctor"]);
    assert!(doctor.status.success(), "{}", stdout(&doctor));
    assert!(stdout(&doctor).contains("all good"));
}

#[test]
fn doctor_without_a_broker_says_what_to_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = plexus()
        .args(["doctor", "--bus"])
        .arg(format!("unix:{}", dir.path().join("bus.sock").display()))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("no socket at") && text.contains("fix: start a broker"),
        "{text}"
    );
}

#[test]
fn version_envinfo_and_help() {
    let run = |args: &[&str]| plexus().args(args).output().expect("run");
    let text = stdout(&run(&["version", "--extended"]));
    assert!(
        text.contains("plexus 0.1.0") && text.contains("protocol version 1"),
        "{text}"
    );
    assert!(stdout(&run(&["envinfo"])).contains("PLEXUS_BUS"));
    let help = stdout(&run(&["--help"]));
    assert!(
        help.contains("124 timeout") && help.contains("2 the method failed"),
        "{help}"
    );
}

#[test]
fn introspect_shows_declared_methods_and_monitor_sees_a_call() {
    let bus = Bus::start();
    let monitor = bus.spawn(&["monitor", "--json", "--count", "3"]);
    let filtered = bus.spawn(&["monitor", "echo.*", "--count", "2"]);
    assert!(filtered.err.next().starts_with("monitoring"));
    bus.wait_subscriptions(2);
    let _echo = bus.echo("echo");
    assert!(bus.run(&["call", "echo", "hi", "a=1"]).status.success());
    assert!(bus.run(&["publish", "news.x", "i", "7"]).status.success());

    let records: Vec<Value> = (0..3)
        .map(|_| serde_json::from_str(&monitor.out.next()).expect("json"))
        .collect();
    assert_eq!(records[0]["kind"], "call");
    assert_eq!(
        (records[0]["object"].as_str(), records[0]["method"].as_str()),
        (Some("echo"), Some("hi"))
    );
    assert_eq!(records[0]["params"], json!({"a":"1"}));
    assert_eq!(records[1]["kind"], "reply");
    assert_eq!(records[1]["call_id"], records[0]["call_id"]);
    assert_eq!(
        records[1]["method"], "hi",
        "the monitor names the call answered"
    );
    assert!(
        records[1]["elapsed_us"].as_u64().is_some(),
        "answers carry timing"
    );
    assert_eq!(
        (records[2]["kind"].as_str(), records[2]["topic"].as_str()),
        (Some("event"), Some("news.x"))
    );

    let call_line = filtered.out.next();
    assert!(
        call_line.contains(" call ") && call_line.contains("echo.hi"),
        "{call_line}"
    );
    let reply_line = filtered.out.next();
    assert!(
        reply_line.contains(" reply ")
            && reply_line.contains("echo.hi")
            && reply_line.contains("µs"),
        "{reply_line}"
    );

    let broker = stdout_json(&bus.run(&["introspect", "plexus", "--json"]));
    assert!(broker["description"]["methods"]["wait_for"].is_object());
    let missing = bus.run(&["introspect", "nobody"]);
    assert_eq!(missing.status.code(), Some(69));
}

struct Calculator;

impl plexus_client::Object for Calculator {
    async fn call(
        &self,
        _method: &str,
        _params: &serde_json::value::RawValue,
        _ctx: &plexus_client::CallContext,
    ) -> Result<Value, plexus_client::Error> {
        Ok(Value::Null)
    }

    fn methods(&self) -> Vec<String> {
        vec!["add".into(), "mul".into()]
    }
}

#[test]
fn introspect_prints_a_table_of_methods() {
    let bus = Bus::start();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let addr = bus.addr();
    let _worker = runtime.block_on(async {
        let worker = plexus_client::Client::connect_to(&addr)
            .await
            .expect("connect");
        worker.serve("math", Calculator).await.expect("serve");
        worker
    });
    let text = stdout(&bus.run(&["introspect", "math"]));
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(text.starts_with("math (exclusive, 1 owner(s))"), "{text}");
    assert_eq!(lines[1], ["METHOD", "SIGNATURE", "DESCRIPTION"], "{text}");
    assert_eq!(lines[2], ["add", "-", "-"], "{text}");
    assert_eq!(lines[3], ["mul", "-", "-"], "{text}");

    let broker = stdout(&bus.run(&["introspect", "plexus"]));
    let wait_for = broker
        .lines()
        .find(|l| l.starts_with("wait_for"))
        .unwrap_or_else(|| panic!("{broker}"));
    assert!(
        wait_for.contains("{names, timeout_ms} or [names] -> {names}"),
        "the signature column: {wait_for}"
    );
}

#[test]
fn the_bus_flag_is_global() {
    let bus = Bus::start();
    let _echo = bus.echo("echo");
    for args in [
        &["--bus", &bus.addr(), "list", "--json"][..],
        &["list", "--bus", &bus.addr(), "--json"][..],
        &["--json", "--bus", &bus.addr(), "list"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_plexus"))
            .args(args)
            .env_remove("PLEXUS_BUS")
            .output()
            .expect("run");
        assert_eq!(stdout_json(&out)[0]["name"], "echo", "{args:?}");
    }
}
