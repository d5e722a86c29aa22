//! What a nats or busctl user reaches for next: `plexus serve NAME -- COMMAND`, publishing N
//! events or one per line of stdin, and shell completion of the names on the bus.

mod cli_support;

use std::process::Command;
use std::time::{Duration, Instant};

use cli_support::{Bus, WAIT, stderr, stdout, stdout_json};
use serde_json::{Value, json};

#[test]
fn serve_answers_each_call_with_a_command() {
    let bus = Bus::start();
    let upper = bus.spawn(&["serve", "upper", "--", "tr", "a-z", "A-Z"]);
    upper.out.until("serving upper");
    assert_eq!(
        stdout_json(&bus.run(&["call", "upper.shout", "\"hello\""])),
        json!("HELLO"),
        "stdout that is JSON is JSON"
    );
    assert_eq!(
        stdout_json(&bus.run(&["call", "upper", "shout", "word=hi"])),
        json!({"WORD": "HI"})
    );

    let env = bus.spawn(&[
        "serve",
        "env",
        "--",
        "sh",
        "-c",
        "printf '%s %s %s' \"$PLEXUS_OBJECT\" \"$PLEXUS_METHOD\" \"$(cat)\"",
    ]);
    env.out.until("serving env");
    assert_eq!(
        stdout_json(&bus.run(&["call", "env.show", "n:=1"])),
        json!("env show {\"n\":1}"),
        "stdout that is not JSON is a string; the method is in the environment"
    );

    let failing = bus.spawn(&[
        "serve",
        "fail",
        "--",
        "sh",
        "-c",
        "echo 'out of paper' >&2; exit 4",
    ]);
    failing.out.until("serving fail");
    let out = bus.run(&["call", "fail.print"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("out of paper"), "{}", stderr(&out));
}

#[test]
fn serve_kills_a_command_that_runs_too_long() {
    let bus = Bus::start();
    let pid_file = bus.dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 30", pid_file.display());
    let slow = bus.spawn(&[
        "serve",
        "slow",
        "--timeout",
        "300ms",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    slow.out.until("serving slow");
    let out = bus.run(&["call", "slow.work"]);
    // `timeout` is the broker's own code (its deadline passed); the command's limit is the
    // worker's business, so its failure is the worker's error (exit 2).
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("internal: sh did not finish within 300 ms; it was killed"),
        "{}",
        stderr(&out)
    );
    let pid = std::fs::read_to_string(&pid_file).expect("the command started");
    wait_gone(pid.trim());
}

/// Waits until process `pid` has ended (gone, or a zombie nobody reaped yet).
fn wait_gone(pid: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next());
        if stat.is_empty() || state == Some("Z") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} still runs: {stat}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn publish_count_and_one_event_per_line() {
    let bus = Bus::start();
    let mut listener = bus.spawn(&["listen", "feed", "--json", "-c", "6"]);
    bus.wait_subscriptions(1);
    let out = bus.run(&["publish", "feed", "tick", "--count", "3", "--ack"]);
    assert_eq!(
        stdout(&out),
        "3 events: delivered to 3 subscription(s), dropped by 0\n"
    );
    let lines = bus.run_with_stdin(&["publish", "feed", "-"], "a line\n{\"b\":1}\n02134\n");
    assert!(lines.status.success(), "{}", stderr(&lines));
    let got: Vec<Value> = (0..6)
        .map(|_| serde_json::from_str::<Value>(&listener.out.next()).expect("json")["data"].clone())
        .collect();
    assert_eq!(
        got,
        [
            json!("tick"),
            json!("tick"),
            json!("tick"),
            json!("a line"),
            json!({"b": 1}),
            json!("02134")
        ]
    );
    assert!(listener.wait().success());

    let counted = bus.run_with_stdin(
        &["publish", "feed", "--lines", "-c", "2", "--ack", "--json"],
        "1\n2\n3\n",
    );
    assert_eq!(stdout_json(&counted)["events"], 2, "-c stops after N lines");
}

/// A directory with `plexus` in it, for shells that run it by name.
fn bin_dir(bus: &Bus) -> String {
    let dir = bus.dir.path().join("bin");
    std::fs::create_dir_all(&dir).expect("bin dir");
    let link = dir.join("plexus");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_plexus"), &link).expect("symlink");
    }
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn shell_installed(shell: &str) -> bool {
    let found = Command::new(shell).arg("-c").arg("exit 0").output().is_ok();
    if !found {
        eprintln!("skipped: {shell} is not installed");
    }
    found
}

#[test]
fn completion_offers_the_names_on_the_bus() {
    let bus = Bus::start();
    let _math = bus.echo("math");
    let _hub = bus.echo("sensor.hub");
    let complete = |words: &[&str]| {
        let mut args = vec!["__complete", "--"];
        args.extend_from_slice(words);
        stdout(&bus.run(&args))
    };
    assert_eq!(complete(&["call", ""]), "math\nplexus\nsensor.hub\n");
    assert_eq!(complete(&["call", "se"]), "sensor.hub\n");
    assert!(complete(&["call", "plexus.w"]).contains("plexus.wait_for\n"));
    assert!(complete(&["call", "plexus", ""]).contains("introspect\n"));
    assert_eq!(complete(&["wait", "math", "m"]), "math\n");
    assert_eq!(complete(&["listen", ""]), "");

    let elsewhere = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["__complete", "--", "--bus", &bus.addr(), "introspect", "m"])
        .env_remove("PLEXUS_BUS")
        .output()
        .expect("run");
    assert_eq!(
        stdout(&elsewhere),
        "math\n",
        "--bus among the words is used"
    );

    let path = bin_dir(&bus);
    let bash = r#"source <(plexus completions bash)
COMP_WORDS=(plexus call "")
COMP_CWORD=2
_plexus_bus plexus "" call
printf '%s\n' "${COMPREPLY[@]}"
COMP_WORDS=(plexus intro)
COMP_CWORD=1
_plexus_bus plexus intro plexus
printf '%s\n' "${COMPREPLY[@]}""#;
    let out = Command::new("bash")
        .args(["-c", bash])
        .env("PATH", &path)
        .env("PLEXUS_BUS", bus.addr())
        .output()
        .expect("bash");
    assert_eq!(
        stdout(&out),
        "math\nplexus\nsensor.hub\nintrospect\n",
        "bash: names on the bus, and clap's completion of commands: {}",
        stderr(&out)
    );

    if shell_installed("fish") {
        let out = Command::new("fish")
            .args([
                "-c",
                "plexus completions fish | source; complete -C 'plexus call '",
            ])
            .env("PATH", &path)
            .env("PLEXUS_BUS", bus.addr())
            .output()
            .expect("fish");
        assert_eq!(
            stdout(&out),
            "math\nplexus\nsensor.hub\n",
            "fish: {}",
            stderr(&out)
        );
    }
    if shell_installed("zsh") {
        let out = Command::new("zsh")
            .args([
                "-c",
                "autoload -Uz compinit && compinit -u -d \"$1\"; source <(plexus completions zsh); print -r -- $_comps[plexus]",
                "zsh",
                &bus.dir.path().join("zcompdump").display().to_string(),
            ])
            .env("PATH", &path)
            .output()
            .expect("zsh");
        assert_eq!(stdout(&out), "_plexus_bus\n", "zsh: {}", stderr(&out));
    }
}
