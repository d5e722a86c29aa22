//! Operating the broker: config files, systemd socket activation, Prometheus metrics.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod cli_support;

use cli_support::plexus;

const WAIT: Duration = Duration::from_secs(10);

fn wait_exit(child: &mut Child) -> Option<i32> {
    cli_support::wait_exit(child, "process").code()
}

fn stop(child: &mut Child) -> Option<i32> {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    wait_exit(child)
}

#[test]
fn config_file_errors_name_the_key_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "socket = \"/tmp/x.sock\"\nsockett = 1\n",
            &["sockett", "line 2"][..],
        ),
        ("max_frame = \"big\"\n", &["max_frame", "line 1"][..]),
        ("tcp = [\"not an address\"]\n", &["tcp", "line 1"][..]),
        ("no_unix = true\n", &["no_unix", "tcp"][..]),
        (
            "outbox_limit = 1048576\n",
            &["outbox_limit 1048576", "max_frame 16842752"][..],
        ),
        (
            "slow_consumer = \"sometimes\"\n",
            &["slow_consumer", "\"drop\" or \"disconnect\"", "sometimes"][..],
        ),
        (
            "max_call_timeout_ms = 1000\n",
            &["max_call_timeout 1000 ms", "30000 ms"][..],
        ),
        ("max_names = -1\n", &["max_names", "line 1"][..]),
    ];
    for (i, (text, wanted)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).expect("write");
        let out = plexus()
            .args(["broker", "--config"])
            .arg(&path)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(64), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        for w in *wanted {
            assert!(err.contains(w), "error for {text:?} mentions {w}: {err}");
        }
    }
    let out = plexus()
        .args(["broker", "--config"])
        .arg(dir.path().join("absent.toml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
}

#[test]
fn config_file_settings_apply_and_flags_win() {
    let dir = tempfile::tempdir().expect("tempdir");
    let from_file = dir.path().join("file.sock");
    let from_flag = dir.path().join("flag.sock");
    let path = dir.path().join("plexus.toml");
    std::fs::write(
        &path,
        format!(
            "socket = {:?}\nmax_frame = 4096\ncall_timeout_ms = 1500\n",
            from_file
        ),
    )
    .expect("write");
    let mut broker = plexus()
        .args(["broker", "--config"])
        .arg(&path)
        .stderr(Stdio::null())
        .spawn()
        .expect("broker");
    cli_support::wait_listening(&from_file, WAIT, "broker listens on the file's socket");
    let out = plexus()
        .args(["doctor", "--bus"])
        .arg(&from_file)
        .output()
        .expect("doctor");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("frames up to 4096 bytes"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stop(&mut broker), Some(0));

    let mut broker = plexus()
        .args(["broker", "--config"])
        .arg(&path)
        .arg("--socket")
        .arg(&from_flag)
        .stderr(Stdio::null())
        .spawn()
        .expect("broker");
    cli_support::wait_listening(&from_flag, WAIT, "the flag's socket wins");
    assert!(!from_file.exists());
    assert_eq!(stop(&mut broker), Some(0));
}

#[test]
fn router_limits_from_the_config_file_apply_and_show_in_stats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("bus.sock");
    let path = dir.path().join("plexus.toml");
    let text = format!(
        "socket = {socket:?}\n\
         # Router limits.\n\
         max_pending_per_connection = 11\n\
         max_pending = 12\n\
         max_call_timeout_ms = 60000\n\
         max_wait_names = 13\n\
         max_names_per_connection = 14\n\
         max_names = 15\n\
         max_subscriptions_per_connection = 16\n\
         max_subscriptions = 17\n\
         max_description_bytes = 18\n\
         slow_consumer = \"disconnect\"\n\
         # Publish stall.\n\
         publish_stall_ms = 19\n"
    );
    std::fs::write(&path, text).expect("write");
    let mut broker = plexus()
        .args(["broker", "--config"])
        .arg(&path)
        .stderr(Stdio::null())
        .spawn()
        .expect("broker");
    cli_support::wait_listening(&socket, WAIT, "broker listens");
    let out = plexus()
        .args(["call", "plexus", "stats", "--bus"])
        .arg(&socket)
        .output()
        .expect("call");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
    let limits = &stats["limits"];
    for (key, value) in [
        ("max_pending_per_connection", serde_json::json!(11)),
        ("max_pending", serde_json::json!(12)),
        ("max_call_timeout_ms", serde_json::json!(60_000)),
        ("max_wait_names", serde_json::json!(13)),
        ("max_names_per_connection", serde_json::json!(14)),
        ("max_names", serde_json::json!(15)),
        ("max_subscriptions_per_connection", serde_json::json!(16)),
        ("max_subscriptions", serde_json::json!(17)),
        ("max_description_bytes", serde_json::json!(18)),
        ("slow_consumer", serde_json::json!("disconnect")),
        // Publish stall.
        ("publish_stall_ms", serde_json::json!(19)),
    ] {
        assert_eq!(limits[key], value, "{key} in {limits}");
    }
    assert_eq!(stop(&mut broker), Some(0));
}

#[test]
fn socket_activation_serves_the_passed_fd_and_leaves_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    // Pass the listener as systemd would: inherited (no close-on-exec), named by LISTEN_FDS.
    rustix::io::fcntl_setfd(listener.as_fd(), rustix::io::FdFlags::empty()).expect("clear CLOEXEC");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let mut broker = plexus()
        .args(["broker", "--socket"])
        .arg(dir.path().join("ignored.sock"))
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDS_FIRST_FD", fd.to_string())
        .env_remove("LISTEN_PID")
        .stderr(Stdio::null())
        .spawn()
        .expect("broker");
    drop(listener);
    let out = plexus()
        .args(["wait", "plexus", "--timeout", "10s", "--bus"])
        .arg(&socket)
        .output()
        .expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "the broker answers on the passed socket: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !dir.path().join("ignored.sock").exists(),
        "no socket of its own"
    );
    assert_eq!(stop(&mut broker), Some(0));
    assert!(socket.exists(), "systemd's socket file is left for systemd");
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("bus.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut broker = plexus()
        .args(["broker", "--socket"])
        .arg(&socket)
        .args(["--metrics", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .expect("broker");
    cli_support::wait_listening(&socket, WAIT, "broker started");
    let bus = format!("unix:{}", socket.display());
    let out = plexus()
        .args(["call", "nobody", "x", "--bus", &bus])
        .output()
        .expect("call");
    assert_eq!(out.status.code(), Some(69));
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect metrics");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("response");
        text
    };
    let text = get("/metrics");
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    for line in [
        "plexus_connections ",
        "plexus_calls_total{outcome=\"no_such_object\"} 1",
        "plexus_call_duration_seconds_bucket{le=\"+Inf\"}",
        "plexus_events_dropped_total 0",
    ] {
        assert!(text.contains(line), "metrics contain {line}: {text}");
    }
    assert!(get("/other").starts_with("HTTP/1.1 404"));
    assert_eq!(stop(&mut broker), Some(0));
}

#[test]
fn max_connections_from_the_config_file_refuses_with_overloaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("bus.sock");
    let path = dir.path().join("plexus.toml");
    std::fs::write(&path, format!("socket = {socket:?}\nmax_connections = 0\n")).expect("write");
    let out = plexus()
        .args(["broker", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64), "a limit of 0 is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_connections"));

    std::fs::write(&path, format!("socket = {socket:?}\nmax_connections = 1\n")).expect("write");
    let mut broker = plexus()
        .args(["broker", "--config"])
        .arg(&path)
        .stderr(Stdio::null())
        .spawn()
        .expect("broker");
    // Hold the one place: a connection that said hello and got its welcome. Probing for the
    // socket may still hold the place for a moment, so a refusal is retried.
    let deadline = Instant::now() + WAIT;
    let _held = loop {
        assert!(Instant::now() < deadline, "broker started");
        let Ok(mut held) = std::os::unix::net::UnixStream::connect(&socket) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        held.set_read_timeout(Some(WAIT)).expect("timeout");
        held.write_all(&plexus_proto::Frame::hello("holder").to_bytes())
            .expect("hello");
        let mut buf = bytes::BytesMut::new();
        let first = loop {
            if let Some(frame) = plexus_proto::decode(&mut buf, u32::MAX).expect("a frame") {
                break frame;
            }
            let mut chunk = [0u8; 4096];
            let n = held.read(&mut chunk).expect("read");
            assert!(n > 0, "the broker answers before closing");
            buf.extend_from_slice(&chunk[..n]);
        };
        if first.kind() == plexus_proto::Kind::Welcome {
            break held;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = plexus()
        .args(["call", "plexus", "ping", "--bus"])
        .arg(&socket)
        .output()
        .expect("call");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("overloaded") && stderr.contains("max_connections"),
        "{stderr}"
    );
    assert_eq!(stop(&mut broker), Some(0));
}
