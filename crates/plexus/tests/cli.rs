//! The `plexus` binary against a real broker process: argument forms, exit codes, listen,
//! list, wait, doctor.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

struct Bus {
    dir: tempfile::TempDir,
    broker: Child,
    children: Vec<Child>,
}

impl Bus {
    fn start() -> Bus {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("bus.sock");
        let broker = Command::new(env!("CARGO_BIN_EXE_plexus"))
            .args(["broker", "--socket"])
            .arg(&socket)
            .stderr(Stdio::null())
            .spawn()
            .expect("broker");
        let deadline = Instant::now() + WAIT;
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "broker did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Bus {
            dir,
            broker,
            children: Vec::new(),
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("bus.sock")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plexus"));
        cmd.args(args)
            .env("PLEXUS_BUS", format!("unix:{}", self.socket().display()));
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + WAIT;
        while child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "plexus {args:?} did not finish");
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait_with_output().expect("output")
    }

    /// Starts a long-running `plexus` command and waits for its first stdout line.
    fn spawn(
        &mut self,
        args: &[&str],
    ) -> (usize, std::io::Lines<BufReader<std::process::ChildStdout>>) {
        let mut child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        self.children.push(child);
        (self.children.len() - 1, lines)
    }

    fn echo(&mut self, name: &str) {
        let (_, mut lines) = self.spawn(&["echo", "--name", name]);
        let first = lines.next().expect("a line").expect("read");
        assert!(first.starts_with(&format!("serving {name}")), "{first}");
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.broker.kill();
        let _ = self.broker.wait();
    }
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

#[test]
fn call_accepts_json_key_value_and_signature_arguments() {
    let mut bus = Bus::start();
    bus.echo("echo");
    let cases: &[(&[&str], Value)] = &[
        (&[r#"{"a":10,"b":32}"#], json!({"a":10,"b":32})),
        (&["a=10", "b=32"], json!({"a":10,"b":32})),
        (
            &["name=bob", "ok=true", "x:=[1,2]"],
            json!({"name":"bob","ok":true,"x":[1,2]}),
        ),
        (&["{ii}", "a", "10", "b", "32"], json!({"a":10,"b":32})),
        (&["(ss)", "one", "two"], json!(["one", "two"])),
        (&["s", "text"], json!("text")),
        (&["i", "42"], json!(42)),
        (&["i", "-5"], json!(-5)),
        (&["n"], json!(null)),
        (&[], json!(null)),
    ];
    for (args, want) in cases {
        let mut full = vec!["call", "echo", "m"];
        full.extend_from_slice(args);
        let out = bus.run(&full);
        assert_eq!(stdout_json(&out), *want, "args {args:?}");
    }
    let out = bus.run(&["call", "echo", "m", "a=1", "--raw"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"a\":1}\n",
        "--raw is one compact line"
    );
}

#[test]
fn exit_codes_follow_the_table() {
    let mut bus = Bus::start();
    bus.echo("echo");
    let code = |out: &Output| out.status.code();

    assert_eq!(
        code(&bus.run(&["call", "nobody", "m"])),
        Some(69),
        "no such object"
    );
    assert_eq!(
        code(&bus.run(&["call", "plexus", "nope"])),
        Some(69),
        "no such method"
    );
    assert_eq!(
        code(&bus.run(&["call", "echo", "m", "i", "ten"])),
        Some(64),
        "bad signature value"
    );
    assert_eq!(
        code(&bus.run(&["call", "echo", "m", "hello"])),
        Some(64),
        "unreadable args"
    );
    assert_eq!(code(&bus.run(&["bogus"])), Some(64), "unknown subcommand");
    assert_eq!(
        code(&bus.run(&["publish", "a.*", "n"])),
        Some(64),
        "wildcard topic"
    );
    assert_eq!(
        code(&bus.run(&["echo", "--name", "plexus"])),
        Some(50),
        "permission denied"
    );
    assert_eq!(
        code(&bus.run(&["echo", "--name", "echo"])),
        Some(125),
        "name taken"
    );
    assert_eq!(
        code(&bus.run(&["wait", "never", "--timeout", "100ms"])),
        Some(124),
        "wait timeout"
    );
    assert_eq!(
        code(&bus.run(&["listen", "quiet", "--timeout", "100ms"])),
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
    let out = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["call", "x", "y", "--bus"])
        .arg(format!("unix:{}", none.display()))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "no broker");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no broker at") && stderr.contains("plexus broker"),
        "{stderr}"
    );

    let stranger = bus.dir.path().join("stranger.sock");
    let listener = std::os::unix::net::UnixListener::bind(&stranger).expect("bind");
    let server = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            use std::io::Write;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let out = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["ping", "--bus"])
        .arg(stranger.to_str().expect("utf8"))
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(3),
        "transport error: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.join().expect("server");
}

#[test]
fn listen_prints_events_and_stops_after_count() {
    let mut bus = Bus::start();
    let (idx, mut lines) = bus.spawn(&["listen", "sensor.>", "other", "--count", "2", "--json"]);
    let (_, mut plain) = bus.spawn(&["listen", "sensor.*", "--count", "1"]);
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = stdout_json(&bus.run(&["stats", "--raw"]));
        if stats["subscriptions"] == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "listeners subscribed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        bus.run(&["publish", "sensor.temp", "s", "25.6°C"])
            .status
            .success()
    );
    assert!(bus.run(&["publish", "other", "a=1"]).status.success());
    let first: Value =
        serde_json::from_str(&lines.next().expect("line").expect("read")).expect("json");
    assert_eq!(
        (first["topic"].as_str(), &first["data"]),
        (Some("sensor.temp"), &json!("25.6°C"))
    );
    assert!(
        first["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{first}"
    );
    let second: Value =
        serde_json::from_str(&lines.next().expect("line").expect("read")).expect("json");
    assert_eq!(second["data"], json!({"a":1}));
    assert_eq!(
        plain.next().expect("line").expect("read"),
        "sensor.temp \"25.6°C\""
    );
    let status = bus.children[idx]
        .wait()
        .expect("listen exits after --count");
    assert!(status.success());
}

#[test]
fn list_wait_stats_ping_and_doctor() {
    let mut bus = Bus::start();
    let waiting = bus
        .cmd(&["wait", "svc", "--timeout", "10s"])
        .spawn()
        .expect("wait");
    bus.children.push(waiting);
    bus.echo("svc");
    let status = bus.children[0].wait().expect("wait exits");
    assert!(status.success(), "wait returned once svc registered");
    let list = stdout_json(&bus.run(&["list", "--json"]));
    assert_eq!(list[0]["name"], "svc");
    assert_eq!(list[0]["owners"][0]["client"], "plexus-cli");
    let table = bus.run(&["list"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.starts_with("NAME") && text.contains("svc") && text.contains("exclusive"),
        "{text}"
    );
    let stats = stdout_json(&bus.run(&["stats"]));
    assert_eq!(stats["names"], 1);
    let ping = bus.run(&["ping", "-c", "2", "--interval", "1ms"]);
    assert!(ping.status.success());
    assert!(String::from_utf8_lossy(&ping.stdout).contains("min/avg/max"));
    let doctor = bus.run(&["doctor"]);
    assert!(
        doctor.status.success(),
        "{}",
        String::from_utf8_lossy(&doctor.stdout)
    );
    assert!(String::from_utf8_lossy(&doctor.stdout).contains("all good"));
}

#[test]
fn doctor_without_a_broker_says_what_to_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["doctor", "--bus"])
        .arg(format!("unix:{}", dir.path().join("bus.sock").display()))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("no socket at") && text.contains("fix: start a broker"),
        "{text}"
    );
}

#[test]
fn version_envinfo_and_completions() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_plexus"))
            .args(args)
            .output()
            .expect("run")
    };
    let out = run(&["version", "--extended"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("plexus 0.1.0") && text.contains("protocol version 1"),
        "{text}"
    );
    let out = run(&["envinfo"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("PLEXUS_BUS"));
    let out = run(&["completions", "bash"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("plexus"));
    let out = run(&["--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("124 timeout"));
}

#[test]
fn introspect_shows_declared_methods_and_monitor_sees_a_call() {
    let mut bus = Bus::start();
    let (_, mut monitor) = bus.spawn(&["monitor", "--json", "--count", "3"]);
    let (_, mut filtered) = bus.spawn(&["monitor", "echo.*", "--count", "2"]);
    assert!(
        filtered
            .next()
            .expect("banner")
            .expect("read")
            .starts_with("monitoring")
    );
    let deadline = Instant::now() + WAIT;
    while stdout_json(&bus.run(&["stats", "--raw"]))["subscriptions"] != 2 {
        assert!(Instant::now() < deadline, "monitors subscribed");
        std::thread::sleep(Duration::from_millis(20));
    }
    bus.echo("echo");
    let out = bus.run(&["call", "echo", "hi", "a=1"]);
    assert!(out.status.success());
    assert!(bus.run(&["publish", "news.x", "i", "7"]).status.success());

    let records: Vec<Value> = (0..3)
        .map(|_| serde_json::from_str(&monitor.next().expect("line").expect("read")).expect("json"))
        .collect();
    assert_eq!(records[0]["kind"], "call");
    assert_eq!(
        (records[0]["object"].as_str(), records[0]["method"].as_str()),
        (Some("echo"), Some("hi"))
    );
    assert_eq!(records[0]["params"], json!({"a":1}));
    assert_eq!(records[1]["kind"], "reply");
    assert_eq!(records[1]["call_id"], records[0]["call_id"]);
    assert!(
        records[1]["elapsed_us"].as_u64().is_some(),
        "answers carry timing"
    );
    assert_eq!(
        (records[2]["kind"].as_str(), records[2]["topic"].as_str()),
        (Some("event"), Some("news.x"))
    );

    let call_line = filtered.next().expect("line").expect("read");
    assert!(
        call_line.contains(" call ") && call_line.contains("echo.hi"),
        "{call_line}"
    );
    let reply_line = filtered.next().expect("line").expect("read");
    assert!(
        reply_line.contains(" reply ") && reply_line.contains("µs"),
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
fn introspect_lists_the_methods_a_worker_declared() {
    let bus = Bus::start();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let addr = format!("unix:{}", bus.socket().display());
    let _worker = runtime.block_on(async {
        let worker = plexus_client::Client::connect_to(&addr)
            .await
            .expect("connect");
        worker.serve("math", Calculator).await.expect("serve");
        worker
    });
    let out = bus.run(&["introspect", "math"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("math (exclusive, 1 owner(s))"), "{text}");
    assert!(
        text.contains("  add\n") && text.contains("  mul\n"),
        "{text}"
    );
}

#[test]
fn bench_runs_and_reports_every_figure() {
    let bus = Bus::start();
    let out = bus.run(&[
        "bench",
        "--calls",
        "50",
        "--throughput-calls",
        "200",
        "--concurrency",
        "8",
        "--events",
        "2000",
        "--json",
    ]);
    let figures = stdout_json(&out);
    for key in [
        "socket_floor_rtt_us",
        "broker_ping_rtt_us",
        "calls_per_s",
        "events_per_s",
    ] {
        assert!(
            figures[key].as_f64().is_some_and(|v| v > 0.0),
            "{key} in {figures}"
        );
    }
    assert!(
        figures["call_latency_us"]["p99"]
            .as_f64()
            .is_some_and(|v| v > 0.0)
    );
    assert_eq!(figures["events_lost"], 0);
}
