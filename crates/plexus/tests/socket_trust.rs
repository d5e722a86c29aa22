//! Trusting the socket: the broker refuses a default socket directory another user could have
//! made, and clients refuse a broker that runs as a user they do not trust.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod cli_support;

use cli_support::plexus;

const WAIT: Duration = Duration::from_secs(10);

/// Runs `plexus broker` with `XDG_RUNTIME_DIR` set to `runtime`, so it uses the default path.
fn broker_in(runtime: &std::path::Path) -> Child {
    plexus()
        .arg("broker")
        .env("XDG_RUNTIME_DIR", runtime)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn broker")
}

fn wait_exit(child: &mut Child) -> Option<i32> {
    cli_support::wait_exit(child, "process").code()
}

#[test]
fn a_default_socket_directory_someone_made_open_is_refused() {
    let runtime = tempfile::tempdir().expect("tempdir");
    let dir = runtime.path().join("plexus");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = broker_in(runtime.path()).wait_with_output().expect("run");
    assert_eq!(out.status.code(), Some(3), "exit code for cannot listen");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&dir.display().to_string()),
        "names the directory: {err}"
    );
    assert!(err.contains("0777") && err.contains("remove it"), "{err}");
    assert!(!dir.join("bus.sock").exists(), "no socket was made");
}

#[test]
fn a_missing_default_socket_directory_is_made_private_and_used() {
    let runtime = tempfile::tempdir().expect("tempdir");
    let mut broker = broker_in(runtime.path());
    let socket = runtime.path().join("plexus").join("bus.sock");
    let deadline = Instant::now() + WAIT;
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the broker listens in time");
        assert!(
            broker.try_wait().expect("wait").is_none(),
            "the broker runs"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mode = std::fs::metadata(socket.parent().expect("dir"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let _ = broker.kill();
    wait_exit(&mut broker);
}

#[test]
fn plexus_broker_uid_set_to_another_user_makes_clients_refuse_the_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("bus.sock");
    let mut broker = plexus()
        .arg("broker")
        .arg("--socket")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn broker");
    cli_support::wait_listening(&socket, WAIT, "the broker listens in time");
    let bus = format!("unix:{}", socket.display());
    let ping = |uid: Option<&str>| {
        let mut cmd = plexus();
        cmd.args(["ping", "--bus", &bus]);
        if let Some(uid) = uid {
            cmd.env("PLEXUS_BROKER_UID", uid);
        }
        cmd.output().expect("run plexus ping")
    };
    let own = rustix::process::geteuid().as_raw().to_string();
    assert_eq!(ping(None).status.code(), Some(0), "our own broker");
    assert_eq!(ping(Some(&own)).status.code(), Some(0), "the expected user");
    let out = ping(Some("4242"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("uid 4242") && err.contains(&format!("uid {own}")),
        "names both users: {err}"
    );
    let out = ping(Some("nobody"));
    assert_eq!(
        out.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = broker.kill();
    wait_exit(&mut broker);
}
