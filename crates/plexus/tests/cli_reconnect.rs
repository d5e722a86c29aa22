//! The broker process restarted under the long-running commands: `echo`, `serve`, `listen` and
//! `monitor` tell the user once, reconnect, and work again; with `--no-reconnect`, or when their
//! name was taken meanwhile, they exit non-zero saying why.

mod cli_support;

use std::os::unix::net::UnixListener;
use std::sync::mpsc::channel;

use cli_support::{Bus, WAIT, stdout_json};
use serde_json::{Value, json};

#[test]
fn echo_serve_listen_and_monitor_reconnect_after_a_broker_restart() {
    let mut bus = Bus::start();
    let echo = bus.echo("e2");
    let serve = bus.spawn(&["serve", "up", "--", "tr", "a-z", "A-Z"]);
    serve.out.until("serving up");
    let listen = bus.spawn(&["listen", "t.>"]);
    let monitor = bus.spawn(&["monitor", "e2.*"]);
    bus.wait_subscriptions(2);

    assert!(monitor.err.next().starts_with("monitoring"));
    assert_eq!(bus.stop_broker().code(), Some(0));
    for (what, proc) in [
        ("echo", &echo),
        ("serve", &serve),
        ("listen", &listen),
        ("monitor", &monitor),
    ] {
        let line = proc.err.next();
        assert!(
            line.starts_with(&format!("plexus: lost the broker at {} (", bus.addr()))
                && line.ends_with("), reconnecting"),
            "{what}: one line, no log lines: {line}"
        );
    }
    bus.start_broker();
    for (what, proc) in [
        ("echo", &echo),
        ("serve", &serve),
        ("listen", &listen),
        ("monitor", &monitor),
    ] {
        let line = proc.err.next();
        assert_eq!(
            line,
            format!("plexus: reconnected to {}", bus.addr()),
            "{what}"
        );
    }

    assert!(
        bus.run(&["wait", "e2", "up", "--timeout", "10s"])
            .status
            .success(),
        "echo and serve registered their names again"
    );
    assert_eq!(
        stdout_json(&bus.run(&["call", "up.it", "\"again\""])),
        json!("AGAIN")
    );
    bus.wait_subscriptions(2);
    let answer = stdout_json(&bus.run(&["call", "e2.hi", "after=restart"]));
    assert_eq!(answer, json!({"after":"restart"}));
    assert!(bus.run(&["publish", "t.x", "back"]).status.success());
    assert_eq!(listen.out.next(), "t.x \"back\"");
    let call = monitor.out.next();
    assert!(call.contains(" call ") && call.contains("e2.hi"), "{call}");
    let reply = monitor.out.next();
    assert!(
        reply.contains(" reply ") && reply.contains("e2.hi"),
        "{reply}"
    );
}

#[test]
fn with_no_reconnect_they_exit_3_when_the_broker_goes() {
    let mut bus = Bus::start();
    let mut echo = bus.spawn(&["echo", "--name", "once", "--no-reconnect"]);
    echo.out.until("serving once");
    let mut listen = bus.spawn(&["listen", "t", "--no-reconnect"]);
    let mut monitor = bus.spawn(&["monitor", "--no-reconnect", "--json"]);
    bus.wait_subscriptions(2);
    bus.stop_broker();
    for (what, proc) in [
        ("echo", &mut echo),
        ("listen", &mut listen),
        ("monitor", &mut monitor),
    ] {
        assert_eq!(proc.wait().code(), Some(3), "{what}");
        let said = proc.err.rest().join("\n");
        if what == "monitor" {
            let error: Value = serde_json::from_str(&said).expect("--json reports errors as JSON");
            assert_eq!(error["error"]["exit"], 3);
        }
        assert!(
            said.contains("lost the broker") && said.contains("--no-reconnect"),
            "{what}: {said}"
        );
    }
}

#[test]
fn echo_exits_73_when_its_name_was_taken_while_the_broker_was_away() {
    let mut bus = Bus::start();
    let mut echo = bus.echo("e3");
    bus.stop_broker();
    echo.err.until("lost the broker");

    // Hold echo's next reconnect in a handshake that never completes, start the broker, let
    // another echo take the name, and only then let the first one through.
    let impostor = UnixListener::bind(bus.socket()).expect("bind the socket path");
    let (accepted, held) = channel();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = impostor.accept() {
            let _ = accepted.send(stream);
        }
    });
    let stream = held.recv_timeout(WAIT).expect("echo tried to reconnect");
    std::fs::remove_file(bus.socket()).expect("free the socket path");
    bus.start_broker();
    let _thief = bus.echo("e3");
    drop(stream);

    assert_eq!(echo.wait().code(), Some(73), "name taken");
    let said = echo.err.rest().join("\n");
    assert!(
        said.contains("lost the name e3")
            && said.contains("name_taken")
            && said.contains("plexus list"),
        "{said}"
    );
}
