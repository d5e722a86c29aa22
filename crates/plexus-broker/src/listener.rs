//! Listening sockets: the Unix socket (default path, permissions, stale-file and
//! running-broker checks) and TCP, and the accept loops that spawn connections.

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use plexus_proto::default_socket_path;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tracing::{info, warn};

use crate::connection;
use crate::error::BrokerError;
use crate::peer::PeerInfo;
use crate::router::Router;
use crate::shutdown::Shutdown;

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

/// A listening socket the accept loop takes connections from.
pub trait Listen: Send + 'static {
    /// The read half of an accepted connection.
    type Reader: AsyncRead + Unpin + Send + 'static;
    /// Its write half.
    type Writer: AsyncWrite + Unpin + Send + 'static;
    /// The transport's name, for logs.
    const TRANSPORT: &'static str;
    /// Accepts one connection, split in halves, with what is known of the peer.
    fn accept_peer(
        &self,
    ) -> impl Future<Output = std::io::Result<(Self::Reader, Self::Writer, PeerInfo)>> + Send;
}

impl Listen for UnixListener {
    type Reader = tokio::net::unix::OwnedReadHalf;
    type Writer = tokio::net::unix::OwnedWriteHalf;
    const TRANSPORT: &'static str = "unix";

    async fn accept_peer(&self) -> std::io::Result<(Self::Reader, Self::Writer, PeerInfo)> {
        let (stream, _) = self.accept().await?;
        let peer = PeerInfo::from_unix(&stream);
        let (r, w) = stream.into_split();
        Ok((r, w, peer))
    }
}

impl Listen for TcpListener {
    type Reader = tokio::net::tcp::OwnedReadHalf;
    type Writer = tokio::net::tcp::OwnedWriteHalf;
    const TRANSPORT: &'static str = "tcp";

    async fn accept_peer(&self) -> std::io::Result<(Self::Reader, Self::Writer, PeerInfo)> {
        let (stream, addr) = self.accept().await?;
        if let Err(e) = stream.set_nodelay(true) {
            warn!(error = %e, "cannot set TCP_NODELAY");
        }
        let (r, w) = stream.into_split();
        Ok((r, w, PeerInfo::from_tcp(addr)))
    }
}

/// Accepts connections until shutdown; each runs in its own task, tracked by `shutdown`.
pub async fn accept_loop<L: Listen>(listener: L, router: Arc<Router>, shutdown: Shutdown) {
    let stop = shutdown.requested();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            a = listener.accept_peer() => a,
        };
        match accepted {
            Ok((r, w, peer)) => {
                shutdown.spawn(connection::serve(
                    r,
                    w,
                    peer,
                    router.clone(),
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                warn!(error = %e, transport = L::TRANSPORT, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
