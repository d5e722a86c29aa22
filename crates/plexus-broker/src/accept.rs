//! The accept loops: take connections from a listening socket (Unix or TCP), back off while
//! accepting fails, refuse connections past the limit, and spawn one task per connection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use plexus_proto::dialect::Dialect;
use plexus_proto::{ErrorCode, Frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::connection::socket::{self, Sock, SocketReader, SocketWriter};
use crate::connection::{self, ReadFds, WriteFds};
use crate::peer::PeerInfo;
use crate::router::Router;
use crate::shutdown::Shutdown;

/// The first pause after a failed accept.
const FIRST_BACKOFF: Duration = Duration::from_millis(1);
/// The longest pause between accepts while they keep failing.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long a refused connection is given to read its error before it is closed.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// Bytes read (and thrown away) from a refused connection while it lingers.
const REFUSAL_DRAIN: usize = 64 * 1024;

/// A listening socket the accept loop takes connections from.
pub trait Listen: Send + 'static {
    /// The read half of an accepted connection.
    type Reader: ReadFds + 'static;
    /// Its write half.
    type Writer: WriteFds + 'static;
    /// The transport's name, for logs.
    const TRANSPORT: &'static str;
    /// Accepts one connection, split in halves, with what is known of the peer.
    fn accept_peer(
        &self,
    ) -> impl Future<Output = std::io::Result<(Self::Reader, Self::Writer, PeerInfo)>> + Send;
}

// Performance: accepted sockets are registered for reading only (see `connection::socket`).
impl Listen for UnixListener {
    type Reader = SocketReader;
    type Writer = SocketWriter;
    const TRANSPORT: &'static str = "unix";

    async fn accept_peer(&self) -> std::io::Result<(Self::Reader, Self::Writer, PeerInfo)> {
        let (stream, _) = self.accept().await?;
        let peer = PeerInfo::from_unix(&stream);
        let (r, w) = socket::split(Sock::from_unix(stream)?)?;
        Ok((r, w, peer))
    }
}

impl Listen for TcpListener {
    type Reader = SocketReader;
    type Writer = SocketWriter;
    const TRANSPORT: &'static str = "tcp";

    async fn accept_peer(&self) -> std::io::Result<(Self::Reader, Self::Writer, PeerInfo)> {
        let (stream, addr) = self.accept().await?;
        if let Err(e) = stream.set_nodelay(true) {
            warn!(error = %e, "cannot set TCP_NODELAY");
        }
        let (r, w) = socket::split(Sock::from_tcp(stream)?)?;
        Ok((r, w, PeerInfo::from_tcp(addr)))
    }
}

/// What every accept loop shares: the router, the shutdown handle, and one slot per connection
/// the broker may have open.
#[derive(Clone)]
pub struct Acceptor {
    router: Arc<Router>,
    shutdown: Shutdown,
    slots: Arc<Semaphore>,
    /// The one dialect its connections speak, instead of the one their first bytes tell.
    forced: Option<Dialect>,
}

impl Acceptor {
    /// An acceptor allowing the config's `max_connections` at once, across all its loops.
    pub fn new(router: Arc<Router>, shutdown: Shutdown) -> Acceptor {
        let limit = router.config().max_connections.min(Semaphore::MAX_PERMITS);
        Acceptor {
            router,
            shutdown,
            slots: Arc::new(Semaphore::new(limit)),
            forced: None,
        }
    }

    /// The same acceptor (sharing its slots), for a listener whose connections all speak
    /// `dialect` (ipc-server's, which cannot be told from NDJSON by its first bytes).
    pub fn speaking(mut self, dialect: Dialect) -> Acceptor {
        self.forced = Some(dialect);
        self
    }

    /// Accepts connections from `listener` until shutdown; each runs in its own tracked task.
    pub async fn run<L: Listen>(self, listener: L) {
        let stop = self.shutdown.requested();
        tokio::pin!(stop);
        let mut at_limit = false;
        loop {
            let (reader, writer, peer) = tokio::select! {
                _ = &mut stop => return,
                a = accept_retrying(L::TRANSPORT, || listener.accept_peer()) => a,
            };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                if !std::mem::replace(&mut at_limit, true) {
                    warn!(
                        limit = self.router.config().max_connections,
                        "connection limit reached; refusing new connections"
                    );
                }
                self.refuse(reader, writer);
                continue;
            };
            at_limit = false;
            let (router, shutdown) = (self.router.clone(), self.shutdown.clone());
            let forced = self.forced;
            self.shutdown.spawn(async move {
                connection::serve(reader, writer, peer, router, shutdown, forced).await;
                drop(slot);
            });
        }
    }

    /// Counts a connection refused at the limit and tells it why in one native error frame, then
    /// closes it once it has read the error (or after [`REFUSAL_LINGER`]).
    fn refuse<R, W>(&self, reader: R, mut writer: W)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        self.router.count_refused_connection();
        let limit = self.router.config().max_connections;
        let message = format!(
            "the broker already has {limit} connections open (its max_connections limit); try again later"
        );
        let frame = Frame::error(0, ErrorCode::Overloaded, &message, b"");
        self.shutdown.spawn(async move {
            let _ = tokio::time::timeout(REFUSAL_LINGER, async move {
                writer.write_all(&frame.to_bytes()).await?;
                writer.shutdown().await?;
                // Reading until the peer closes keeps unread bytes from turning the close into a
                // reset that could discard the error before the peer reads it.
                let mut drain = reader.take(REFUSAL_DRAIN as u64);
                tokio::io::copy(&mut drain, &mut tokio::io::sink()).await
            })
            .await;
        });
    }
}

/// Accepts with `accept` until it succeeds, pausing with [`Backoff`] while it fails (as it does
/// while the process is out of file descriptors: without a pause the loop would spin). Logs the
/// first failure of a run and the recovery; `transport` names the listener. Cancel safe.
pub async fn accept_retrying<T, F>(transport: &str, mut accept: impl FnMut() -> F) -> T
where
    F: Future<Output = std::io::Result<T>>,
{
    let mut backoff = Backoff::default();
    loop {
        match accept().await {
            Ok(accepted) => {
                if backoff.succeeded() {
                    info!(transport, "accepting connections again");
                }
                return accepted;
            }
            Err(e) => {
                let (pause, first) = backoff.failed();
                if first {
                    warn!(error = %e, transport, "accept failed; retrying with backoff up to {MAX_BACKOFF:?}");
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// The pause between failed accepts: doubling from [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`],
/// reset by a successful accept.
#[derive(Debug, Default)]
struct Backoff {
    pause: Option<Duration>,
}

impl Backoff {
    /// The pause after another failure, and whether it is the first of this run of failures.
    fn failed(&mut self) -> (Duration, bool) {
        let (pause, first) = match self.pause {
            None => (FIRST_BACKOFF, true),
            Some(last) => ((last * 2).min(MAX_BACKOFF), false),
        };
        self.pause = Some(pause);
        (pause, first)
    }

    /// Resets after a success; returns whether failures came before it.
    fn succeeded(&mut self) -> bool {
        self.pause.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets_on_success() {
        let mut backoff = Backoff::default();
        assert!(!backoff.succeeded(), "no failures yet");
        let pauses: Vec<(u128, bool)> = (0..13)
            .map(|_| backoff.failed())
            .map(|(pause, first)| (pause.as_millis(), first))
            .collect();
        let expected: Vec<(u128, bool)> = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 1000, 1000]
            .into_iter()
            .enumerate()
            .map(|(i, ms)| (ms, i == 0))
            .collect();
        assert_eq!(pauses, expected, "one warning per run of failures");
        assert!(backoff.succeeded());
        assert_eq!(
            backoff.failed(),
            (FIRST_BACKOFF, true),
            "a new run starts over"
        );
    }
}
