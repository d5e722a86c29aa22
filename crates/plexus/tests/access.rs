//! Access control against the real broker: a `plexus broker` with a policy (or a token, or
//! listener flags), and `plexus` clients running as other users (the tests run as root and drop
//! to other uids and gids for each client with `CommandExt::uid`/`gid`).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod cli_support;

use cli_support::{Lines, WAIT, ndjson_request, plexus, wait_exit};

/// Users the clients run as (they need no entry in /etc/passwd).
const ALICE: u32 = 1001;
const BOB: u32 = 1002;
/// A group given to some clients.
const CREW: u32 = 4242;

/// What everyone in the tests below may do: root (the test itself) may do everything, alice a
/// little, bob less; `secret.*` is denied to all, over alice's allow.
const POLICY: &str = r#"
[[allow]]
who = ["uid:0"]
own = [">"]
join = [">"]
call = [">"]
publish = [">"]
subscribe = [">"]
monitor = true
list_details = true

[[allow]]
who = ["uid:1001"]
own = ["math"]
join = ["pool"]
call = ["math.*", "secret.*"]
publish = ["sensor.>"]
subscribe = ["sensor.>"]

[[allow]]
who = ["uid:1002"]
call = ["math.add"]

[[allow]]
who = ["gid:4242"]
call = ["crew.*"]

[[deny]]
who = ["*"]
call = ["secret.*"]
"#;

/// A broker in a temporary directory other users can reach.
struct SecureBus {
    dir: tempfile::TempDir,
    broker: Child,
}

impl SecureBus {
    /// Starts `plexus broker` on `bus.sock` with `policy` (if any) and `args`, and waits until it
    /// accepts connections.
    fn start(policy: Option<&str>, args: &[&str]) -> SecureBus {
        let dir = open_dir();
        let mut cmd = broker_cmd(&dir, policy, args);
        let log = std::fs::File::create(dir.path().join("broker.log")).expect("broker log");
        let broker = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn plexus broker");
        let mut bus = SecureBus { dir, broker };
        let deadline = Instant::now() + WAIT;
        while std::os::unix::net::UnixStream::connect(bus.socket()).is_err() {
            if let Some(status) = bus.broker.try_wait().expect("wait") {
                panic!("the broker exited ({status}): {}", bus.log());
            }
            assert!(Instant::now() < deadline, "the broker did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        bus
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("bus.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// The TCP address the broker printed that it listens on.
    fn tcp_addr(&self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.log();
            if let Some(addr) = log
                .lines()
                .find_map(|l| l.strip_prefix("plexus broker listening on tcp://"))
            {
                return addr.trim().to_owned();
            }
            assert!(Instant::now() < deadline, "no TCP address in: {log}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `plexus --bus THIS ARGS` as `uid`/`gid`, not yet started.
    fn cmd_as(&self, uid: u32, gid: u32, args: &[&str]) -> std::process::Command {
        let mut cmd = plexus();
        cmd.arg("--bus")
            .arg(format!("unix:{}", self.socket().display()))
            .args(args)
            .env_remove("PLEXUS_BUS")
            .env_remove("PLEXUS_TOKEN")
            .uid(uid)
            .gid(gid);
        cmd
    }

    /// Runs `plexus ARGS` as `uid` (its own gid) to the end.
    fn run_as(&self, uid: u32, args: &[&str]) -> Output {
        run(self.cmd_as(uid, uid, args), args)
    }

    /// Starts a long-running `plexus ARGS` as `uid` and waits for its first line of output.
    fn spawn_as(&self, uid: u32, args: &[&str]) -> Running {
        Running::start(self.cmd_as(uid, uid, args), args)
    }
}

impl Drop for SecureBus {
    fn drop(&mut self) {
        let _ = self.broker.kill();
        let _ = self.broker.wait();
    }
}

/// A temporary directory (root's, mode 0755) that other users can reach a socket in. The tests
/// run clients as other users, which only root may do: they fail, never skip, elsewhere.
fn open_dir() -> tempfile::TempDir {
    assert!(
        rustix::process::geteuid().is_root(),
        "the access tests run clients as other uids and must run as root (as CI does)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// `plexus broker --socket DIR/bus.sock [--policy DIR/policy.toml --socket-mode 0666] ARGS`.
fn broker_cmd(
    dir: &tempfile::TempDir,
    policy: Option<&str>,
    args: &[&str],
) -> std::process::Command {
    let mut cmd = plexus();
    cmd.arg("broker")
        .arg("--socket")
        .arg(dir.path().join("bus.sock"));
    if let Some(policy) = policy {
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, policy).expect("write policy");
        cmd.arg("--policy")
            .arg(path)
            .args(["--socket-mode", "0666"]);
    }
    cmd.args(args);
    cmd
}

/// Runs a broker that must refuse to start; its stderr.
fn broker_refuses(policy: Option<&str>, args: &[&str]) -> String {
    let dir = open_dir();
    let out = run(broker_cmd(&dir, policy, args), args);
    assert_eq!(
        out.status.code(),
        Some(64),
        "{args:?} must be refused as a bad config"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `cmd` to the end, with a hang guard.
fn run(mut cmd: std::process::Command, what: &[&str]) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plexus");
    let out = Lines::read(child.stdout.take().expect("stdout"), format!("{what:?}"));
    let err = Lines::read(child.stderr.take().expect("stderr"), format!("{what:?}"));
    let status = wait_exit(&mut child, &format!("plexus {what:?}"));
    let join = |lines: Vec<String>| lines.join("\n").into_bytes();
    Output {
        status,
        stdout: join(out.rest()),
        stderr: join(err.rest()),
    }
}

/// A long-running `plexus` command and its output.
struct Running {
    child: Child,
    out: Lines,
}

impl Running {
    fn start(mut cmd: std::process::Command, what: &[&str]) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn plexus");
        Running {
            out: Lines::read(child.stdout.take().expect("stdout"), format!("{what:?}")),
            child,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts `out` is a `permission_denied` refusal (exit 50) whose message contains `text`.
fn assert_denied(out: &Output, text: &str) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(50),
        "permission denied expected: {err}"
    );
    assert!(err.contains(text), "the message names {text:?}: {err}");
}

/// The broker's counters, asked as root.
fn stats(bus: &SecureBus) -> Value {
    let out = bus.run_as(0, &["stats", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("stats JSON")
}

#[test]
fn owning_and_joining_names_follow_the_policy_per_uid() {
    let bus = SecureBus::start(Some(POLICY), &["-v"]);
    let math = bus.spawn_as(ALICE, &["echo", "--name", "math"]);
    assert!(
        math.out.next().starts_with("serving math"),
        "alice may own math"
    );
    let out = bus.run_as(BOB, &["echo", "--name", "other"]);
    assert_denied(
        &out,
        "own 'other' not allowed: no policy rule grants it to uid 1002",
    );
    let out = bus.run_as(ALICE, &["echo", "--name", "pool"]);
    assert_denied(&out, "own 'pool' not allowed");
    let pool = bus.spawn_as(ALICE, &["echo", "--name", "pool", "--shared"]);
    assert!(
        pool.out.next().starts_with("serving pool"),
        "alice may join pool"
    );
    let out = bus.run_as(BOB, &["echo", "--name", "pool", "--shared"]);
    assert_denied(&out, "join 'pool' not allowed");
    let counters = stats(&bus);
    assert_eq!(counters["access_denied"], 3, "{counters}");
    assert_eq!(counters["errors"]["permission_denied"], 3, "{counters}");
    assert!(
        bus.log().contains("permission denied"),
        "each refusal is logged: {}",
        bus.log()
    );
}

#[test]
fn calls_are_checked_and_a_deny_rule_wins_over_an_allow_rule() {
    let bus = SecureBus::start(Some(POLICY), &[]);
    let _math = bus.spawn_as(0, &["echo", "--name", "math"]);
    let _secret = bus.spawn_as(0, &["echo", "--name", "secret"]);
    let _crew = bus.spawn_as(0, &["echo", "--name", "crew"]);
    bus.run_as(0, &["wait", "math", "secret", "crew"]);
    let out = bus.run_as(BOB, &["call", "math.add", "[1,2]"]);
    assert!(
        out.status.success(),
        "bob may call math.add: {}",
        stderr(&out)
    );
    assert!(stdout(&out).contains('1'), "{}", stdout(&out));
    let out = bus.run_as(BOB, &["call", "math.sub", "[1,2]"]);
    assert_denied(&out, "call 'math.sub' not allowed");
    let out = bus.run_as(ALICE, &["call", "math.sub", "[1,2]"]);
    assert!(
        out.status.success(),
        "alice may call math.*: {}",
        stderr(&out)
    );
    let out = bus.run_as(ALICE, &["call", "secret.get", "{}"]);
    assert_denied(
        &out,
        "call 'secret.get' denied by policy rule deny[0].call[0] \"secret.*\" for uid 1001",
    );
    let crew = |uid: u32, gid: u32| {
        run(
            bus.cmd_as(uid, gid, &["call", "crew.hello", "{}"]),
            &["call crew"],
        )
    };
    let out = crew(BOB, CREW);
    assert!(
        out.status.success(),
        "the group rule applies: {}",
        stderr(&out)
    );
    assert_denied(&crew(BOB, BOB), "call 'crew.hello' not allowed");
}

#[test]
fn publishing_subscribing_and_the_monitor_feed_follow_the_policy() {
    let bus = SecureBus::start(Some(POLICY), &[]);
    let listener = bus.spawn_as(ALICE, &["listen", "sensor.>"]);
    let deadline = Instant::now() + WAIT;
    while stats(&bus)["subscriptions"] != 1 {
        assert!(
            Instant::now() < deadline,
            "alice's subscription was not made"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = bus.run_as(ALICE, &["publish", "--ack", "sensor.temp", "21"]);
    assert!(out.status.success(), "alice may publish: {}", stderr(&out));
    assert!(listener.out.until("sensor.temp").contains("21"));
    let out = bus.run_as(BOB, &["publish", "--ack", "sensor.temp", "22"]);
    assert_denied(&out, "publish on 'sensor.temp' not allowed");
    let out = bus.run_as(BOB, &["listen", "sensor.>"]);
    assert_denied(&out, "subscribe to 'sensor.>' not allowed");
    let out = bus.run_as(ALICE, &["listen", ">"]);
    assert_denied(&out, "subscribe to '>' not allowed");
    let out = bus.run_as(ALICE, &["monitor"]);
    assert_denied(
        &out,
        "watching the monitor feed (plexus.monitor.*) not allowed: no policy rule sets monitor = true for uid 1001",
    );
    let monitor = bus.spawn_as(0, &["monitor", "--json"]);
    let deadline = Instant::now() + WAIT;
    while stats(&bus)["subscriptions"] == 1 {
        assert!(
            Instant::now() < deadline,
            "root's monitor did not subscribe"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    bus.run_as(ALICE, &["publish", "--ack", "sensor.hum", "40"]);
    assert!(monitor.out.until("sensor.hum").contains("event"));
    drop(monitor);
    drop(listener);
}

#[test]
fn list_details_are_shown_only_where_the_policy_grants_them() {
    let bus = SecureBus::start(Some(POLICY), &[]);
    let _math = bus.spawn_as(ALICE, &["echo", "--name", "math"]);
    bus.run_as(0, &["wait", "math"]);
    let list = |uid| -> Value {
        let out = bus.run_as(uid, &["list", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("list JSON")
    };
    let seen_by_root = list(0);
    let owner = &seen_by_root[0]["owners"][0];
    assert_eq!(
        owner["uid"], ALICE,
        "root sees who owns math: {seen_by_root}"
    );
    assert!(owner["pid"].is_u64(), "{seen_by_root}");
    let seen_by_bob = list(BOB);
    let owner = &seen_by_bob[0]["owners"][0];
    assert_eq!(seen_by_bob[0]["name"], "math", "bob sees the name");
    assert!(
        owner.get("uid").is_none() && owner.get("pid").is_none() && owner.get("exe").is_none(),
        "but not who owns it: {seen_by_bob}"
    );
}

#[test]
fn a_shared_socket_needs_a_policy() {
    let err = broker_refuses(None, &["--socket-mode", "0660", "--socket-group", "4242"]);
    assert!(err.contains("needs a policy"), "{err}");
    let err = broker_refuses(None, &["--socket-mode", "0666"]);
    assert!(err.contains("needs a policy"), "{err}");
}

#[test]
fn a_group_socket_lets_in_its_group_only() {
    let dir = open_dir();
    let policy = "[[allow]]\nwho = [\"group:root\", \"gid:4242\"]\ncall = [\"plexus.*\"]\n";
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy).expect("write policy");
    let socket = dir.path().join("bus.sock");
    let _broker = Running::start(
        {
            let mut cmd = plexus();
            cmd.arg("broker")
                .arg("--socket")
                .arg(&socket)
                .arg("--policy")
                .arg(&path)
                .args(["--socket-mode", "0660", "--socket-group", "4242"]);
            cmd
        },
        &["broker"],
    );
    let deadline = Instant::now() + WAIT;
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the broker did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let meta = std::fs::metadata(&socket).expect("socket");
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), CREW);
    let ping = |uid: u32, gid: u32| {
        let mut cmd = plexus();
        cmd.arg("--bus")
            .arg(format!("unix:{}", socket.display()))
            .args(["ping", "--count", "1"])
            .uid(uid)
            .gid(gid);
        run(cmd, &["ping"])
    };
    let out = ping(ALICE, CREW);
    assert!(
        out.status.success(),
        "the group may connect: {}",
        stderr(&out)
    );
    let out = ping(ALICE, ALICE);
    assert_eq!(
        out.status.code(),
        Some(1),
        "others cannot open the socket: {}",
        stderr(&out)
    );
}

#[test]
fn tcp_needs_loopback_or_allow_remote_with_a_token() {
    let err = broker_refuses(None, &["--tcp", "0.0.0.0:0"]);
    assert!(err.contains("--allow-remote"), "{err}");
    let err = broker_refuses(None, &["--tcp", "0.0.0.0:0", "--allow-remote"]);
    assert!(err.contains("needs a token"), "{err}");
}

#[test]
fn a_tcp_peer_needs_the_right_token() {
    let dir = open_dir();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token-0123456789\n").expect("token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let token_arg = token_file.display().to_string();
    let bus = SecureBus::start(
        None,
        &[
            "--tcp",
            "0.0.0.0:0",
            "--allow-remote",
            "--token-file",
            &token_arg,
        ],
    );
    let port = bus.tcp_addr().rsplit(':').next().expect("port").to_owned();
    let addr = format!("tcp://127.0.0.1:{port}");
    let ping = |token: Option<&str>| {
        let mut cmd = plexus();
        cmd.args(["--bus", &addr, "ping", "--count", "1"])
            .env_remove("PLEXUS_TOKEN");
        if let Some(token) = token {
            cmd.env("PLEXUS_TOKEN", token);
        }
        run(cmd, &["ping"])
    };
    assert_denied(&ping(None), "sent none in hello");
    assert_denied(&ping(Some("s3cret-token-0123456780")), "not the broker's");
    let out = ping(Some("s3cret-token-0123456789"));
    assert!(out.status.success(), "the right token: {}", stderr(&out));
    let mut cmd = plexus();
    cmd.args([
        "--bus",
        &addr,
        "--token-file",
        &token_arg,
        "ping",
        "--count",
        "1",
    ])
    .env_remove("PLEXUS_TOKEN");
    let out = run(cmd, &["ping --token-file"]);
    assert!(
        out.status.success(),
        "the token from a file: {}",
        stderr(&out)
    );
    assert_eq!(stats(&bus)["access_denied"], 2);
}

#[test]
fn dialect_tcp_listeners_are_loopback_only_unless_anonymous_peers_get_rights() {
    let err = broker_refuses(None, &["--ipc-broker-tcp", "0.0.0.0:0"]);
    assert!(err.contains("anonymous"), "{err}");
    let err = broker_refuses(None, &["--ipc-server-compat", "0.0.0.0:0"]);
    assert!(err.contains("anonymous"), "{err}");
    let err = broker_refuses(Some(POLICY), &["--ipc-broker-tcp", "0.0.0.0:0"]);
    assert!(
        err.contains("anonymous"),
        "a policy without anonymous rights: {err}"
    );
    let grants = "[[allow]]\nwho = [\"anonymous\"]\ncall = [\"math.*\"]\n";
    let _granted = SecureBus::start(Some(grants), &["--ipc-broker-tcp", "0.0.0.0:0"]);
    let _loopback = SecureBus::start(None, &["--ipc-broker-tcp", "127.0.0.1:0"]);
}

#[test]
fn per_uid_quotas_are_hit_and_reported() {
    let policy = format!(
        "{POLICY}\n[quotas]\nconnections = 3\nnames = 1\nsubscriptions = 1\npending_calls = 1\n"
    );
    let bus = SecureBus::start(Some(&policy), &[]);
    let _slow = bus.spawn_as(0, &["serve", "math", "--", "sleep", "5"]);
    bus.run_as(0, &["wait", "math"]);
    let pool = bus.spawn_as(ALICE, &["echo", "--name", "pool", "--shared"]);
    assert!(pool.out.next().starts_with("serving pool"));
    let out = bus.run_as(ALICE, &["echo", "--name", "math"]);
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("quotas.names = 1"),
        "a second name is over alice's quota: {err}"
    );
    let listener = bus.spawn_as(ALICE, &["listen", "sensor.a"]);
    let deadline = Instant::now() + WAIT;
    while stats(&bus)["subscriptions"] != 1 {
        assert!(
            Instant::now() < deadline,
            "alice's subscription was not made"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = bus.run_as(ALICE, &["listen", "sensor.b"]);
    assert!(
        stderr(&out).contains("quotas.subscriptions = 1"),
        "a second subscription is over alice's quota: {}",
        stderr(&out)
    );
    let slow_call = bus.spawn_as(ALICE, &["call", "math.add", "[1]"]);
    let deadline = Instant::now() + WAIT;
    while stats(&bus)["pending_calls"] != 1 {
        assert!(Instant::now() < deadline, "alice's call is not pending");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = bus.run_as(ALICE, &["ping", "--count", "1"]);
    assert!(
        stderr(&out).contains("quotas.connections = 3"),
        "a fourth connection is over alice's quota: {}",
        stderr(&out)
    );
    drop(listener);
    let out = bus.run_as(ALICE, &["call", "math.add", "[2]"]);
    assert!(
        stderr(&out).contains("quotas.pending_calls = 1"),
        "a second pending call is over alice's quota: {}",
        stderr(&out)
    );
    let out = bus.run_as(BOB, &["call", "math.add", "[3]", "--timeout", "100ms"]);
    assert!(
        !stderr(&out).contains("quota"),
        "bob's quota is his own: {}",
        stderr(&out)
    );
    assert!(
        stats(&bus)["quota_exceeded"].as_u64() >= Some(4),
        "{}",
        stats(&bus)
    );
    drop(slow_call);
}

#[test]
fn doctor_explains_the_policy_in_effect_for_the_caller() {
    let policy = format!("{POLICY}\n[quotas]\nnames = 5\n");
    let bus = SecureBus::start(Some(&policy), &[]);
    let out = bus.run_as(ALICE, &["doctor"]);
    let text = stdout(&out);
    assert!(
        text.contains("the broker knows you as uid 1001, gid 1001"),
        "{text}"
    );
    assert!(
        text.contains("policy.toml is in effect for uid 1001"),
        "{text}"
    );
    assert!(
        text.contains(r#"call: allowed "math.*" (allow[1].call[0]), "secret.*" (allow[1].call[1]); denied "secret.*" (deny[0].call[0])"#),
        "{text}"
    );
    assert!(
        text.contains("own: allowed \"math\" (allow[1].own[0])"),
        "{text}"
    );
    assert!(
        text.contains("the monitor feed: not granted by any rule"),
        "{text}"
    );
    assert!(text.contains("quotas for uid 1001: names 5"), "{text}");
    let out = bus.run_as(0, &["doctor"]);
    let text = stdout(&out);
    assert!(
        text.contains("the monitor feed: allowed by allow[0].monitor"),
        "{text}"
    );
}

#[test]
fn without_a_policy_doctor_says_so_and_everything_is_allowed() {
    let dir = open_dir();
    let out = run(
        {
            let mut cmd = plexus();
            cmd.arg("--bus")
                .arg(format!("unix:{}", dir.path().join("none.sock").display()))
                .arg("doctor");
            cmd
        },
        &["doctor"],
    );
    assert!(!out.status.success(), "no broker there");
    let bus = SecureBus::start(None, &[]);
    let out = bus.run_as(0, &["doctor"]);
    assert!(
        stdout(&out).contains("the broker has no policy"),
        "{}",
        stdout(&out)
    );
    let meta = std::fs::metadata(bus.socket()).expect("socket");
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "same user only, as before"
    );
    let out = bus.run_as(ALICE, &["ping", "--count", "1"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "other users cannot open a 0600 socket"
    );
}

#[test]
fn the_outgoing_bytes_quota_bounds_what_is_queued_to_one_user() {
    use std::io::Write;
    let policy = format!("{POLICY}\n[quotas]\noutgoing_bytes = 300000\n");
    let bus = SecureBus::start(Some(&policy), &[]);
    // Two of root's connections subscribe and never read: what the broker queues to them stays
    // queued, counted against root's quota.
    let stalled: Vec<std::os::unix::net::UnixStream> = (0..2)
        .map(|i| {
            let mut s = std::os::unix::net::UnixStream::connect(bus.socket()).expect("connect");
            let mut bytes = plexus_proto::Frame::hello("stalled").to_bytes().to_vec();
            bytes.extend_from_slice(&plexus_proto::Frame::subscribe(1 + i, "sensor.>").to_bytes());
            s.write_all(&bytes).expect("hello and subscribe");
            s
        })
        .collect();
    let deadline = Instant::now() + WAIT;
    while stats(&bus)["subscriptions"] != 2 {
        assert!(
            Instant::now() < deadline,
            "the stalled subscriptions were not made"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // 3000 events of 1 KiB: 3 MiB for each, far under a connection's own outbox_limit (32 MiB),
    // far over root's 300 kB of outgoing bytes with the socket buffers.
    let body = "x".repeat(1024);
    let out = bus.run_as(
        ALICE,
        &["publish", "--ack", "--count", "3000", "sensor.t", &body],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let counters = stats(&bus);
    let dropped = counters["events_dropped"].as_u64().expect("a count");
    let delivered = counters["events_delivered"].as_u64().expect("a count");
    assert!(dropped > 0, "the quota dropped events: {counters}");
    assert!(
        delivered < 2 * 1500,
        "most events did not fit in root's quota: {counters}"
    );
    drop(stalled);
}

#[test]
fn the_config_file_sets_the_policy_the_socket_mode_and_the_token() {
    let dir = open_dir();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).expect("write policy");
    let token = dir.path().join("token");
    std::fs::write(&token, "config-file-token-0123456789").expect("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let config = dir.path().join("plexus.toml");
    std::fs::write(
        &config,
        format!(
            "socket = \"{}\"\npolicy = \"{}\"\nsocket_mode = \"0666\"\ntoken_file = \"{}\"\ntcp = [\"127.0.0.1:0\"]\n",
            dir.path().join("bus.sock").display(),
            policy.display(),
            token.display()
        ),
    )
    .expect("write config");
    let log = std::fs::File::create(dir.path().join("broker.log")).expect("log");
    let broker = plexus()
        .arg("broker")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn broker");
    let bus = SecureBus { dir, broker };
    let deadline = Instant::now() + WAIT;
    while std::os::unix::net::UnixStream::connect(bus.socket()).is_err() {
        assert!(
            Instant::now() < deadline,
            "the broker did not start: {}",
            bus.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let meta = std::fs::metadata(bus.socket()).expect("socket");
    assert_eq!(meta.permissions().mode() & 0o777, 0o666, "socket_mode");
    assert_denied(&bus.run_as(BOB, &["call", "math.sub", "{}"]), "not allowed");
    let addr = format!("tcp://{}", bus.tcp_addr());
    let mut cmd = plexus();
    cmd.args(["--bus", &addr, "ping", "--count", "1"])
        .env_remove("PLEXUS_TOKEN");
    assert_denied(&run(cmd, &["ping"]), "sent none in hello");
    let bad = bus.dir.path().join("bad.toml");
    std::fs::write(&bad, "[[allow]]\nwho = [\"user:no-such-user-here\"]\n").expect("write");
    let out = run(
        {
            let mut cmd = plexus();
            cmd.arg("broker").arg("--policy").arg(&bad);
            cmd
        },
        &["broker --policy bad"],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("allow[0].who: no user \"no-such-user-here\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn dialect_peers_on_the_socket_are_checked_by_their_uid_too() {
    let policy = "[[allow]]\nwho = [\"uid:0\"]\nown = [\"math\"]\ncall = [\"math.*\"]\n";
    let bus = SecureBus::start(Some(policy), &[]);
    let _math = bus.spawn_as(0, &["echo", "--name", "math"]);
    bus.run_as(0, &["wait", "math"]);
    let allowed = ndjson_request(
        &bus.socket(),
        serde_json::json!({"jsonrpc":"2.0","id":1,"method":"math.add","params":[1,2]}),
    );
    assert_eq!(allowed["result"], serde_json::json!([1, 2]), "{allowed}");
    let denied = ndjson_request(
        &bus.socket(),
        serde_json::json!({"jsonrpc":"2.0","id":2,"method":"secret.get","params":{}}),
    );
    assert_eq!(
        denied["error"]["code"], -32009,
        "permission_denied: {denied}"
    );
    let message = denied["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("call 'secret.get' not allowed") && message.contains("uid 0"),
        "{denied}"
    );
}

#[test]
fn the_policy_is_checked_before_a_contract() {
    let bus = SecureBus::start(Some(POLICY), &[]);
    let contract = bus.dir.path().join("math.json");
    std::fs::write(
        &contract,
        r#"{"methods": {"sub": {"params": {"type": "object", "required": ["a", "b"]}}}}"#,
    )
    .expect("write the contract");
    let contract = contract.to_str().expect("utf-8 path");
    let _math = bus.spawn_as(0, &["echo", "--name", "math", "--schema", contract]);
    bus.run_as(0, &["wait", "math"]);
    // Params that break the contract, from a peer the policy refuses: the refusal names the
    // policy, and nothing of the contract is told.
    let out = bus.run_as(BOB, &["call", "math.sub", "[1,2]"]);
    assert_denied(&out, "call 'math.sub' not allowed");
    assert!(!stderr(&out).contains("required"), "{}", stderr(&out));
    // The same params from a peer the policy lets call: the contract refuses them (exit 60).
    let out = bus.run_as(ALICE, &["call", "math.sub", "[1,2]"]);
    assert_eq!(out.status.code(), Some(60), "{}", stderr(&out));
}
