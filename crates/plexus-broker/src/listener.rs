//! Listening sockets: binding the Unix socket (default path, permissions, stale-file and
//! running-broker checks) or taking over one passed by systemd.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use plexus_proto::default_socket_path;
use tokio::net::UnixListener;
use tracing::info;

use crate::error::BrokerError;

/// The socket path the broker uses when none is given.
pub fn default_path() -> PathBuf {
    let uid = rustix::process::getuid().as_raw();
    default_socket_path(std::env::var_os("XDG_RUNTIME_DIR").as_deref(), uid)
}

/// Whose choice the socket path was, which sets how strictly its directory is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketDir {
    /// The default path: its directory must be the broker user's own and writable by it alone.
    Default,
    /// A path given in the config: its directory must be the broker user's or root's, and
    /// writable by nobody else unless it is sticky (like `/tmp`).
    Given,
}

/// Binds the Unix socket at `path`: creates its directory (0700) if missing, refuses a directory
/// other users could swap the socket in, refuses if a broker answers there, removes a stale
/// socket file, and makes the socket 0600.
pub fn bind_unix(path: &Path, kind: SocketDir) -> Result<UnixListener, BrokerError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                BrokerError::io(
                    format!("cannot create socket directory {}", dir.display()),
                    e,
                )
            })?;
        check_dir(dir, kind)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(BrokerError::NotASocket(path.to_owned()));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BrokerError::AlreadyRunning(path.to_owned()));
        }
        info!(path = %path.display(), "removing stale socket file");
        std::fs::remove_file(path).map_err(|e| {
            BrokerError::io(format!("cannot remove stale socket {}", path.display()), e)
        })?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| BrokerError::io(format!("cannot listen on {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| BrokerError::io(format!("cannot set permissions of {}", path.display()), e))?;
    Ok(listener)
}

/// Access control: gives the socket `mode` and, when asked, `group`, so that a group of users (or
/// everyone) can connect; the policy decides what each may do. 0600 and no group changes nothing.
pub fn share(path: &Path, mode: u32, group: Option<u32>) -> Result<(), BrokerError> {
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| {
            BrokerError::io(
                format!("cannot give socket {} to group {gid}", path.display()),
                e,
            )
        })?;
    }
    if mode != 0o600 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
            BrokerError::io(format!("cannot set permissions of {}", path.display()), e)
        })?;
    }
    Ok(())
}

/// Refuses a socket directory another user could replace the socket in.
fn check_dir(dir: &Path, kind: SocketDir) -> Result<(), BrokerError> {
    let meta = match kind {
        SocketDir::Default => std::fs::symlink_metadata(dir),
        SocketDir::Given => std::fs::metadata(dir),
    }
    .map_err(|e| {
        BrokerError::io(
            format!("cannot inspect socket directory {}", dir.display()),
            e,
        )
    })?;
    let me = rustix::process::geteuid().as_raw();
    let problem = if meta.file_type().is_symlink() {
        Some(DirProblem::Symlink)
    } else {
        dir_problem(meta.uid(), meta.mode(), me, kind)
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(BrokerError::UnsafeSocketDir {
            dir: dir.to_owned(),
            why: problem.explain(meta.uid(), meta.mode(), me, kind),
        }),
    }
}

/// What makes a socket directory unsafe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirProblem {
    /// The default directory is a symbolic link (to wherever its creator chose).
    Symlink,
    /// Another user owns it, and so can replace anything in it.
    Owner,
    /// Others can write to it, and so rename or remove the socket and put theirs in its place.
    Writable,
}

/// The problem with a directory owned by `owner` with `mode`, for a broker running as `me`.
fn dir_problem(owner: u32, mode: u32, me: u32, kind: SocketDir) -> Option<DirProblem> {
    let others_write = mode & 0o022 != 0;
    let sticky = mode & 0o1000 != 0;
    match kind {
        SocketDir::Default if owner != me => Some(DirProblem::Owner),
        SocketDir::Default if others_write => Some(DirProblem::Writable),
        SocketDir::Given if owner != me && owner != 0 => Some(DirProblem::Owner),
        SocketDir::Given if others_write && !sticky => Some(DirProblem::Writable),
        _ => None,
    }
}

impl DirProblem {
    /// What is wrong and what to do, after "socket directory DIR is not safe: ".
    fn explain(self, owner: u32, mode: u32, me: u32, kind: SocketDir) -> String {
        let mode = format!("{:04o}", mode & 0o7777);
        let what = match self {
            DirProblem::Symlink => "it is a symbolic link".to_owned(),
            DirProblem::Owner => format!(
                "it is owned by uid {owner} (mode {mode}), and the broker runs as uid {me}; its owner can replace the socket"
            ),
            DirProblem::Writable => format!(
                "its mode is {mode} (owner uid {owner}): other users can write to it and replace the socket"
            ),
        };
        let todo = match kind {
            SocketDir::Default => {
                "remove it (another user may have made it to intercept the bus), set XDG_RUNTIME_DIR, or choose a socket with --socket PATH"
            }
            SocketDir::Given => {
                "use a directory owned by the broker's user or root that only its owner can write to (chmod go-w) or that is sticky like /tmp (chmod +t)"
            }
        };
        format!("{what}; {todo}")
    }
}

/// Takes over a listening socket passed by systemd (socket activation).
pub fn adopt_unix(
    listener: std::os::unix::net::UnixListener,
) -> Result<crate::UnixSocket, BrokerError> {
    let what = "cannot use the socket passed by systemd";
    listener
        .set_nonblocking(true)
        .map_err(|e| BrokerError::io(what, e))?;
    let path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("(passed by systemd)"));
    let listener = UnixListener::from_std(listener).map_err(|e| BrokerError::io(what, e))?;
    Ok(crate::UnixSocket {
        listener,
        path,
        owned: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_directory_must_be_the_brokers_own_and_writable_by_it_alone() {
        let me = 1000;
        let default = |owner, mode| dir_problem(owner, mode, me, SocketDir::Default);
        assert_eq!(default(me, 0o700), None);
        assert_eq!(default(me, 0o755), None, "others may read, not write");
        assert_eq!(default(me, 0o777), Some(DirProblem::Writable));
        assert_eq!(default(me, 0o770), Some(DirProblem::Writable));
        assert_eq!(
            default(me, 0o1777),
            Some(DirProblem::Writable),
            "sticky is not enough"
        );
        assert_eq!(default(1001, 0o700), Some(DirProblem::Owner));
        assert_eq!(
            default(0, 0o700),
            Some(DirProblem::Owner),
            "not even root's"
        );
    }

    #[test]
    fn a_given_directory_must_be_the_brokers_or_roots_and_writable_by_others_only_if_sticky() {
        let me = 1000;
        let given = |owner, mode| dir_problem(owner, mode, me, SocketDir::Given);
        assert_eq!(given(me, 0o700), None);
        assert_eq!(given(0, 0o755), None);
        assert_eq!(given(0, 0o1777), None, "like /tmp");
        assert_eq!(given(me, 0o1777), None);
        assert_eq!(given(0, 0o777), Some(DirProblem::Writable));
        assert_eq!(given(me, 0o775), Some(DirProblem::Writable));
        assert_eq!(given(1001, 0o755), Some(DirProblem::Owner));
        assert_eq!(
            given(1001, 0o1777),
            Some(DirProblem::Owner),
            "its owner can still unlink"
        );
    }

    #[test]
    fn the_explanation_names_owner_mode_and_what_to_do() {
        let why = DirProblem::Writable.explain(1001, 0o40777, 1000, SocketDir::Default);
        assert!(why.contains("0777") && why.contains("uid 1001"), "{why}");
        assert!(
            why.contains("remove it") && why.contains("--socket"),
            "{why}"
        );
        let why = DirProblem::Owner.explain(1001, 0o40700, 1000, SocketDir::Given);
        assert!(
            why.contains("uid 1001") && why.contains("uid 1000"),
            "{why}"
        );
        assert!(why.contains("chmod"), "{why}");
    }
}
