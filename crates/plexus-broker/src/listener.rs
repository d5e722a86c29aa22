//! Listening sockets: binding the Unix socket (default path, permissions, stale-file and
//! running-broker checks) or taking over one passed by systemd.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
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

/// Binds the Unix socket at `path`: creates its directory (0700), refuses if a broker answers
/// there, removes a stale socket file, and makes the socket 0600.
pub fn bind_unix(path: &Path) -> Result<UnixListener, BrokerError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
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
