//! Contracts from the command line: `echo --schema`, exit 60 from `call` and `publish`,
//! `call --check`, `introspect` with schemas and `--markdown`, `broker --contracts-dir`.

mod cli_support;

use std::process::Stdio;
use std::time::Duration;

use cli_support::{Bus, Guard, plexus, stderr, stdout, stdout_json, wait_listening};
use serde_json::{Value, json};

fn contract() -> Value {
    json!({
        "methods": {
            "add": {
                "description": "Adds two integers.",
                "params": {
                    "type": "object",
                    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                    "required": ["a", "b"]
                },
                "result": {"type": "object", "required": ["a", "b"]}
            },
            "count": {"deprecated": true, "result": {"type": "integer"}}
        },
        "topics": {"math.done": {"payload": {"type": "integer"}}}
    })
}

/// A bus with `plexus echo --name math --schema FILE` serving [`contract`].
fn math_bus() -> (Bus, cli_support::Proc) {
    let bus = Bus::start();
    let file = bus.dir.path().join("math.json");
    std::fs::write(&file, contract().to_string()).expect("write");
    let echo = bus.spawn(&[
        "echo",
        "--name",
        "math",
        "--schema",
        &file.to_string_lossy(),
    ]);
    let first = echo.out.next();
    assert!(first.starts_with("serving math"), "{first}");
    (bus, echo)
}

#[test]
fn call_and_publish_exit_60_naming_the_pointer_and_reason() {
    let (bus, _echo) = math_bus();
    let ok = bus.run(&["call", "math", "add", "a:=1", "b:=2"]);
    assert_eq!(stdout_json(&ok), json!({"a": 1, "b": 2}));

    let bad = bus.run(&["call", "math", "add", "a:=1", "b=two"]);
    assert_eq!(bad.status.code(), Some(60), "{}", stderr(&bad));
    let err = stderr(&bad);
    assert!(
        err.contains("invalid_params") && err.contains("at /b") && err.contains("integer"),
        "{err}"
    );
    let bad = bus.run(&["--json", "call", "math", "add", "a:=1"]);
    assert_eq!(bad.status.code(), Some(60));
    let report: Value = serde_json::from_str(stderr(&bad).trim()).expect("JSON error");
    assert_eq!(report["error"]["data"]["keyword"], "required");
    assert_eq!(report["error"]["exit"], 60);

    // echo answers with its params: for `count` that is not the integer its contract promises.
    let lie = bus.run(&["call", "math", "count", "x:=1"]);
    assert_eq!(lie.status.code(), Some(60), "{}", stderr(&lie));
    assert!(stderr(&lie).contains("invalid_result"), "{}", stderr(&lie));

    let published = bus.run(&["publish", "math.done", "7"]);
    assert_eq!(published.status.code(), Some(0), "{}", stderr(&published));
    let refused = bus.run(&["publish", "math.done", "x=1"]);
    assert_eq!(refused.status.code(), Some(60), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("topic 'math.done'"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn call_check_validates_locally_without_sending() {
    let (bus, _echo) = math_bus();
    let routed = || bus.stats()["calls_routed"].as_u64().unwrap_or(u64::MAX);
    let before = routed();
    let bad = bus.run(&["call", "--check", "math", "add", "a:=1"]);
    assert_eq!(bad.status.code(), Some(60), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("required") && stderr(&bad).contains("not sent"),
        "{}",
        stderr(&bad)
    );
    let good = bus.run(&["call", "--check", "math", "add", "a:=1", "b:=2"]);
    assert_eq!(good.status.code(), Some(0), "{}", stderr(&good));
    assert!(
        stdout(&good).contains("match its contract"),
        "{}",
        stdout(&good)
    );
    assert_eq!(routed(), before, "--check never calls the worker");
}

#[test]
fn introspect_prints_descriptions_schemas_and_markdown() {
    let (bus, _echo) = math_bus();
    let out = bus.run(&["introspect", "math"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("{a: integer, b: integer} -> object"),
        "{text}"
    );
    assert!(
        text.contains("Adds two integers.") && text.contains("(deprecated)"),
        "{text}"
    );
    assert!(text.contains("add params: {"), "{text}");
    assert!(
        text.contains("topic math.done payload: {\"type\":\"integer\"}"),
        "{text}"
    );

    let json = stdout_json(&bus.run(&["--json", "introspect", "math"]));
    assert_eq!(
        json["description"]["methods"]["add"]["params"],
        contract()["methods"]["add"]["params"]
    );

    let md = stdout(&bus.run(&["introspect", "math", "--markdown"]));
    assert!(md.starts_with("# `math`\n"), "{md}");
    assert!(md.contains("### `math.count` *(deprecated)*"), "{md}");
    assert!(md.contains("**Params**\n\n```json\n"), "{md}");
    assert!(md.contains("## Topics\n\n### `math.done`"), "{md}");
}

#[test]
fn a_broker_with_pinned_contracts_refuses_a_different_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pinned = dir.path().join("pinned");
    std::fs::create_dir(&pinned).expect("mkdir");
    std::fs::write(pinned.join("math.json"), contract().to_string()).expect("write");
    let socket = dir.path().join("bus.sock");
    let _broker = Guard(
        plexus()
            .args(["broker", "--socket"])
            .arg(&socket)
            .arg("--contracts-dir")
            .arg(&pinned)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn broker"),
    );
    wait_listening(&socket, Duration::from_secs(10), "the broker");
    let mut other = contract();
    other["methods"]["add"]["params"]["required"] = json!(["a"]);
    let file = dir.path().join("other.json");
    std::fs::write(&file, other.to_string()).expect("write");
    let out = plexus()
        .args(["echo", "--name", "math", "--schema"])
        .arg(&file)
        .env("PLEXUS_BUS", format!("unix:{}", socket.display()))
        .output()
        .expect("run echo");
    assert_eq!(
        out.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pinned") && err.contains("/methods/add/params/required"),
        "{err}"
    );

    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).expect("mkdir");
    std::fs::write(
        broken.join("x.json"),
        "{\"methods\":{\"m\":{\"params\":{\"type\":1}}}}",
    )
    .expect("write");
    let out = plexus()
        .args(["broker", "--socket"])
        .arg(dir.path().join("other.sock"))
        .arg("--contracts-dir")
        .arg(&broken)
        .output()
        .expect("run broker");
    assert_eq!(
        out.status.code(),
        Some(64),
        "a broken pinned contract is a bad config"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("x.json"));
}
