//! The dialects as processes: `plexus broker --ipc-broker-compat/--ipc-broker-tcp` listeners, and
//! `plexus bridge procbridge` in front of a real PyPI `procbridge` server.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

mod cli_support;

use cli_support::{Guard, Lines, WAIT, ndjson_request, plexus};

#[test]
fn broker_flags_add_ipc_broker_listeners_that_speak_every_dialect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("bus.sock");
    let ipc_socket = dir.path().join("ipc_broker.sock");
    let mut child = plexus()
        .args(["broker", "--socket"])
        .arg(&socket)
        .arg("--ipc-broker-compat")
        .arg(&ipc_socket)
        .args(["--ipc-broker-tcp", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plexus broker");
    let stderr = Lines::read(child.stderr.take().expect("stderr"), "broker stderr".into());
    let mut broker = Guard(child);
    stderr.until("for ipc-broker programs on unix:");
    let tcp_line = stderr.until("listening on tcp://");
    let addr = tcp_line
        .rsplit("tcp://")
        .next()
        .expect("an address")
        .to_owned();

    let pong = ndjson_request(&ipc_socket, json!({"op":"ping","id":1,"data":"x"}));
    assert_eq!(pong, json!({"op":"pong","id":1,"data":"x"}));

    let mut tcp = std::net::TcpStream::connect(&addr).expect("connect tcp");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    let body = json!({"HasObject":{"object_name":"plexus"}}).to_string();
    let mut packet = (body.len() as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(body.as_bytes());
    tcp.write_all(&packet).expect("write");
    let mut len = [0u8; 4];
    tcp.read_exact(&mut len).expect("length");
    let mut answer = vec![0u8; u32::from_be_bytes(len) as usize];
    tcp.read_exact(&mut answer).expect("body");
    let answer: Value = serde_json::from_slice(&answer).expect("JSON");
    assert_eq!(
        answer,
        json!({"HasObjectResult":{"object_name":"plexus","exists":true}})
    );

    assert_eq!(broker.terminate().code(), Some(0));
    assert!(!ipc_socket.exists(), "the ipc-broker socket is removed");
    assert!(!socket.exists(), "the bus socket is removed");
}

/// A Python that can import `procbridge`: `PLEXUS_PYTHON` (required in CI), else locally the
/// workspace's `.venv` or `python3`. `None` (after a printed reason) to skip.
fn python_with_procbridge() -> Option<String> {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let imports = |python: &str| {
        Command::new(python)
            .args(["-c", "import procbridge"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if let Ok(python) = std::env::var("PLEXUS_PYTHON") {
        assert!(
            imports(&python),
            "PLEXUS_PYTHON={python} cannot import procbridge"
        );
        return Some(python);
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python");
    if !in_ci {
        for python in [venv, "python3"] {
            if imports(python) {
                return Some(python.to_owned());
            }
        }
    }
    assert!(
        !in_ci,
        "PLEXUS_PYTHON with the procbridge package is needed in CI"
    );
    eprintln!("skipped: no Python with the procbridge package (set PLEXUS_PYTHON)");
    None
}

/// Two ProcBridge servers (Unix and TCP) from the PyPI package, with `add`, `echo`, and an error.
const PYPI_SERVER: &str = r#"
import sys, procbridge
def delegate(method, payload):
    if method == "add":
        return {"sum": payload["a"] + payload["b"]}
    if method == "echo":
        return payload
    raise Exception("no method " + method)
unix = procbridge.Server.from_unix(sys.argv[1], delegate)
unix.start()
tcp = procbridge.Server("127.0.0.1", 0, delegate)
tcp.start()
print("ready", tcp.socket.getsockname()[1], flush=True)
sys.stdin.read()
"#;

#[test]
fn bridge_makes_a_procbridge_server_a_bus_object() {
    let Some(python) = python_with_procbridge() else {
        return;
    };
    let help = plexus()
        .args(["bridge", "--help"])
        .output()
        .expect("run plexus");
    assert!(help.status.success(), "plexus bridge --help works");
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("bus.sock");
    let pb_socket = dir.path().join("pb.sock");

    let mut server = Command::new(&python)
        .args(["-c", PYPI_SERVER])
        .arg(&pb_socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the ProcBridge server");
    let server_out = Lines::read(
        server.stdout.take().expect("stdout"),
        "server stdout".into(),
    );
    let _server = Guard(server);
    let ready = server_out.until("ready");
    let port = ready.rsplit(' ').next().expect("a port").to_owned();

    let mut broker = plexus()
        .args(["broker", "--socket"])
        .arg(&socket)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plexus broker");
    let broker_err = Lines::read(
        broker.stderr.take().expect("stderr"),
        "broker stderr".into(),
    );
    let _broker = Guard(broker);
    broker_err.until("listening on unix:");

    let mut bridges = Vec::new();
    for (name, connect) in [
        ("py.unix", format!("unix:{}", pb_socket.display())),
        ("py.tcp", format!("127.0.0.1:{port}")),
    ] {
        let mut bridge = plexus()
            .args([
                "bridge",
                "procbridge",
                "--name",
                name,
                "--connect",
                &connect,
                "--bus",
            ])
            .arg(&socket)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn plexus bridge");
        let out = Lines::read(
            bridge.stdout.take().expect("stdout"),
            "bridge stdout".into(),
        );
        out.until("bridging");
        bridges.push(Guard(bridge));
    }

    for name in ["py.unix", "py.tcp"] {
        let result = ndjson_request(
            &socket,
            json!({"jsonrpc":"2.0","id":1,"method":format!("{name}.add"),"params":{"a":10,"b":32}}),
        );
        assert_eq!(
            result,
            json!({"jsonrpc":"2.0","id":1,"result":{"sum":42}}),
            "{name}"
        );
        let echoed = ndjson_request(
            &socket,
            json!({"jsonrpc":"2.0","id":2,"method":format!("{name}.echo"),"params":[1,"x",null]}),
        );
        assert_eq!(echoed["result"], json!([1, "x", null]), "{name}");
        let failed = ndjson_request(
            &socket,
            json!({"jsonrpc":"2.0","id":3,"method":format!("{name}.mul"),"params":{}}),
        );
        assert_eq!(
            failed["error"],
            json!({"code":-32603,"message":"no method mul",
                "data":{"plexus_code":12,"plexus_error":"internal"}}),
            "internal, as JSON-RPC's internal error"
        );
    }

    for mut bridge in bridges {
        assert_eq!(
            bridge.terminate().code(),
            Some(0),
            "the bridge stops cleanly"
        );
    }
}
