//! The socket's directory: a broker refuses one that other users could replace the socket in.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use plexus_broker::{Broker, BrokerError, Config};

async fn bind_in(dir: &Path) -> Result<Broker, BrokerError> {
    Broker::bind(Config {
        socket: Some(dir.join("bus.sock")),
        ..Config::default()
    })
    .await
}

fn dir_with_mode(parent: &Path, name: &str, mode: u32) -> std::path::PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
    dir
}

#[tokio::test]
async fn a_socket_directory_others_can_write_to_is_refused_with_its_owner_and_mode() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let open = dir_with_mode(tmp.path(), "open", 0o777);
    let Err(err) = bind_in(&open).await else {
        panic!("a 0777 directory was used")
    };
    let text = err.to_string();
    assert!(matches!(err, BrokerError::UnsafeSocketDir { .. }), "{text}");
    assert!(
        text.contains(&open.display().to_string()),
        "names the directory: {text}"
    );
    assert!(text.contains("0777"), "names the mode: {text}");
    let me = rustix::process::geteuid().as_raw();
    assert!(
        text.contains(&format!("uid {me}")),
        "names the owner: {text}"
    );
    assert!(!open.join("bus.sock").exists(), "no socket was made");
}

#[tokio::test]
async fn a_sticky_or_private_socket_directory_is_used() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (name, mode) in [("sticky", 0o1777), ("private", 0o700), ("readable", 0o755)] {
        let dir = dir_with_mode(tmp.path(), name, mode);
        let broker = bind_in(&dir)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(broker.unix_path(), Some(dir.join("bus.sock").as_path()));
    }
}

#[tokio::test]
async fn a_socket_directory_owned_by_another_user_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let theirs = dir_with_mode(tmp.path(), "theirs", 0o755);
    if std::os::unix::fs::chown(&theirs, Some(4242), None).is_err() {
        plexus_test_support::missing("root, to give a directory to another user");
        return;
    }
    let Err(err) = bind_in(&theirs).await else {
        panic!("another user's directory was used")
    };
    let text = err.to_string();
    assert!(text.contains("uid 4242"), "names the owner: {text}");
}

#[tokio::test]
async fn a_missing_socket_directory_is_made_private() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a").join("b");
    let _broker = bind_in(&dir).await.expect("bind");
    let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}
