//! Arguments never change data: `=` is a string and `:=` JSON (HTTPie's rule), JSON reaches the
//! worker byte for byte, params come from stdin and files, a malformed JSON argument says where,
//! `OBJECT METHOD` and `OBJECT.METHOD` both call, `publish` takes a word of text.

mod cli_support;

use cli_support::{Bus, stderr, stdout_json};
use serde_json::{Value, json};

#[test]
fn key_value_is_a_string_and_colon_equals_is_json() {
    let bus = Bus::start();
    let _echo = bus.echo("echo");
    let out = bus.run(&[
        "call",
        "echo",
        "m",
        "version=1.10",
        "zip=02134",
        "flag=true",
        "n:=10",
        "ok:=true",
        "tags:=[\"a\",\"b\"]",
    ]);
    assert_eq!(
        stdout_json(&out),
        json!({"version":"1.10","zip":"02134","flag":"true","n":10,"ok":true,"tags":["a","b"]})
    );
}

#[test]
fn json_reaches_the_worker_and_subscribers_as_written() {
    let bus = Bus::start();
    let kept = bus.dir.path().join("params.json");
    let script = format!("cat > {}", kept.display());
    let keeper = bus.spawn(&["serve", "keep", "--", "sh", "-c", &script]);
    keeper.out.until("serving keep");
    let out = bus.run(&[
        "call",
        "keep.it",
        "big:=123456789012345678901234567890",
        "v:=1.10",
        "zip=02134",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&kept).expect("the params the command got"),
        r#"{"big":123456789012345678901234567890,"v":1.10,"zip":"02134"}"#
    );

    let listener = bus.spawn(&["listen", "exact", "--json", "-c", "1"]);
    bus.wait_subscriptions(1);
    let body = r#"{"id":98765432109876543210987654321,"ratio":2.50}"#;
    assert!(bus.run(&["publish", "exact", body]).status.success());
    let line = listener.out.next();
    assert!(line.contains(&format!("\"data\":{body}")), "{line}");
}

#[test]
fn params_from_stdin_and_files() {
    let bus = Bus::start();
    let _echo = bus.echo("echo");
    let out = bus.run_with_stdin(&["call", "echo.m", "-"], "{\"from\": \"stdin\"}\n");
    assert_eq!(stdout_json(&out), json!({"from":"stdin"}));

    let file = bus.dir.path().join("p.json");
    std::fs::write(&file, "[1, 2, {\"three\": 3}]").expect("write");
    let at = format!("@{}", file.display());
    assert_eq!(
        stdout_json(&bus.run(&["call", "echo.m", &at])),
        json!([1, 2, {"three": 3}])
    );
    let text = bus.dir.path().join("note.txt");
    std::fs::write(&text, "a note").expect("write");
    let pairs = [
        format!("list:=@{}", file.display()),
        format!("note=@{}", text.display()),
    ];
    assert_eq!(
        stdout_json(&bus.run(&["call", "echo.m", &pairs[0], &pairs[1]])),
        json!({"list":[1, 2, {"three": 3}], "note": "a note"})
    );
    let empty = bus.run_with_stdin(&["call", "echo.m", "-"], "");
    assert_eq!(empty.status.code(), Some(64));
    assert!(
        stderr(&empty).contains("stdin was empty"),
        "{}",
        stderr(&empty)
    );
}

#[test]
fn malformed_json_is_refused_with_its_position() {
    let bus = Bus::start();
    let _echo = bus.echo("echo");
    let out = bus.run(&["call", "echo.m", r#"{"a":1,}"#]);
    assert_eq!(out.status.code(), Some(64));
    let said = stderr(&out);
    assert!(said.contains("line 1 column 8"), "{said}");
    assert!(
        said.contains("    {\"a\":1,}\n           ^"),
        "a caret under it: {said}"
    );

    let out = bus.run(&["call", "echo.m", "x:=[1,2"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("x:=") && stderr(&out).contains("line 1 column 4"),
        "{}",
        stderr(&out)
    );

    let file = bus.dir.path().join("bad.json");
    std::fs::write(&file, "{\n  \"a\": tru\n}\n").expect("write");
    let out = bus.run(&["call", "echo.m", &format!("@{}", file.display())]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("bad.json")
            && stderr(&out).contains("line 2 column 10")
            && stderr(&out).contains("  \"a\": tru\n             ^"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn call_takes_object_method_and_object_dot_method() {
    let bus = Bus::start();
    let _math = bus.echo("math");
    let _hub = bus.echo("sensor.hub");
    let monitor = bus.spawn(&["monitor", "--json"]);
    bus.wait_subscriptions(1);
    let calls: &[(&[&str], &str, &str, Value)] = &[
        (
            &["math", "add", "a:=1", "b:=2"],
            "math",
            "add",
            json!({"a":1,"b":2}),
        ),
        (
            &["math.add", "a:=1", "b:=2"],
            "math",
            "add",
            json!({"a":1,"b":2}),
        ),
        (&["math.add"], "math", "add", Value::Null),
        (&["math.neg", "42"], "math", "neg", json!(42)),
        (&["math.add", "i", "7"], "math", "add", json!(7)),
        (&["sensor.hub", "read"], "sensor.hub", "read", Value::Null),
        (
            &["sensor.hub.read", "unit=C"],
            "sensor.hub",
            "read",
            json!({"unit":"C"}),
        ),
    ];
    for (words, object, method, params) in calls {
        let mut args = vec!["call"];
        args.extend_from_slice(words);
        assert_eq!(stdout_json(&bus.run(&args)), *params, "{words:?}");
        let record: Value =
            serde_json::from_str(&monitor.out.until("\"kind\":\"call\"")).expect("json");
        assert_eq!(
            (record["object"].as_str(), record["method"].as_str()),
            (Some(*object), Some(*method)),
            "{words:?}"
        );
    }
    let out = bus.run(&["call", "math"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("plexus call math METHOD") && stderr(&out).contains("math.METHOD"),
        "says both forms: {}",
        stderr(&out)
    );
    let help = String::from_utf8_lossy(&bus.run(&["call", "--help"]).stdout).into_owned();
    assert!(
        help.contains("OBJECT.METHOD") && help.contains("last dot"),
        "{help}"
    );
}

#[test]
fn publish_takes_a_word_of_text_and_refuses_wildcards() {
    let bus = Bus::start();
    let listener = bus.spawn(&["listen", "sensor.>", "--json", "-c", "4"]);
    bus.wait_subscriptions(1);
    for body in ["hello", "25.6°C", "42", "02134"] {
        assert!(
            bus.run(&["publish", "sensor.x", body]).status.success(),
            "{body}"
        );
    }
    let data: Vec<Value> = (0..4)
        .map(|_| serde_json::from_str::<Value>(&listener.out.next()).expect("json")["data"].clone())
        .collect();
    assert_eq!(
        data,
        [json!("hello"), json!("25.6°C"), json!(42), json!("02134")]
    );

    let out = bus.run(&["publish", "sensor.*", "hello"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("wildcards are for subscribing"),
        "{}",
        stderr(&out)
    );
    let out = bus.run(&["publish", "sensor.x", "s"]);
    assert_eq!(out.status.code(), Some(64), "an incomplete signature");
    assert!(
        stderr(&out).contains(r#"'"s"'"#),
        "says how to send the text: {}",
        stderr(&out)
    );
}
