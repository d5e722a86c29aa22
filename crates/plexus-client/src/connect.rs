//! Reaching the broker: opening the Unix or TCP socket, the hello/welcome handshake, and
//! reconnecting with backoff.

use std::time::Duration;

use plexus_proto::{BusAddr, Frame, Kind, flags};
use tokio::net::{TcpStream, UnixStream};
use tracing::debug;

use crate::socket::{self, FrameReader, Sock, Writer};
use crate::{BrokerInfo, Error, Options};

/// How long the broker has to answer `hello`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest frame taken during the handshake: `welcome` and `error` are small.
const HANDSHAKE_LIMIT: u32 = 64 * 1024;
/// The smallest limit on frames from the broker, whatever its welcome says: answers the broker
/// makes itself (`list`, `stats`) are not bound by the limit it sets on what it accepts.
const SMALLEST_READ_LIMIT: u32 = 1024 * 1024;
/// The largest limit on frames from the broker, whatever its welcome says: a frame is buffered
/// whole before it is decoded.
const LARGEST_READ_LIMIT: u32 = 256 * 1024 * 1024;
/// The wait before the first reconnect attempt; it doubles after each failure.
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest wait between reconnect attempts.
const LONGEST_RETRY: Duration = Duration::from_secs(2);
/// An open, handshaken connection.
pub(crate) struct Connection {
    /// Frames from the broker.
    pub(crate) reader: FrameReader,
    /// Bytes to the broker.
    pub(crate) writer: Writer,
    /// What the broker said in its `welcome`.
    pub(crate) welcome: BrokerInfo,
    /// Memfd payloads: whether the broker agreed to take and send them.
    pub(crate) fds: bool,
}

/// Connects to `addr` and completes the handshake, as `options.name`. On a Unix socket the
/// broker's user is checked against `options.trust_broker_uid` before anything is sent.
pub(crate) async fn open(addr: &BusAddr, options: &Options) -> Result<Connection, Error> {
    let client_name = options.name.as_str();
    let no_broker = |source| Error::NoBroker {
        addr: addr.to_string(),
        source,
    };
    let sock = match addr {
        BusAddr::Unix(path) => {
            let stream = UnixStream::connect(path).await.map_err(no_broker)?;
            let broker_uid = stream.peer_cred()?.uid();
            let own_uid = rustix::process::geteuid().as_raw();
            let expected = options.trust_broker_uid;
            if !broker_trusted(broker_uid, own_uid, expected) {
                return Err(Error::UntrustedBroker {
                    addr: addr.to_string(),
                    broker_uid,
                    own_uid,
                    expected,
                });
            }
            Sock::from_unix(stream)?
        }
        BusAddr::Tcp(hostport) => {
            let s = TcpStream::connect(hostport).await.map_err(no_broker)?;
            s.set_nodelay(true)?;
            Sock::from_tcp(s)?
        }
    };
    let handshake_failed = |why: String| Error::Handshake {
        addr: addr.to_string(),
        why,
    };
    let (mut reader, mut writer): (FrameReader, Writer) = socket::split(sock, HANDSHAKE_LIMIT)?;
    let hello = match (&options.token, addr) {
        (Some(token), BusAddr::Tcp(_)) => Frame::hello_with_token(client_name, &token.0),
        // Memfd payloads: asked for on a Unix socket.
        (_, BusAddr::Unix(_)) => Frame::hello(client_name).with_flags(flags::FD_PAYLOAD),
        (_, BusAddr::Tcp(_)) => Frame::hello(client_name),
    };
    writer.write_all(&hello.to_bytes()).await?;
    let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.read_frame())
        .await
        .map_err(|_| handshake_failed("no answer to hello within 10 s".into()))?
        .map_err(|e| handshake_failed(format!("{e} (is a plexus broker listening there?)")))?;
    match first.kind() {
        Kind::Welcome => {
            reader.set_limit(read_limit(first.aux()));
            Ok(Connection {
                fds: first.flags() & flags::FD_PAYLOAD != 0 && matches!(addr, BusAddr::Unix(_)),
                reader,
                writer,
                welcome: BrokerInfo {
                    conn_id: first.id(),
                    max_frame: first.aux(),
                    version: first.string(0).to_owned(),
                },
            })
        }
        Kind::Error => Err(Error::from_frame(&first)),
        other => Err(handshake_failed(format!(
            "expected welcome, got {}",
            other.name()
        ))),
    }
}

/// Whether a client running as `own_uid` talks to a broker running as `broker_uid`: the one user
/// it was told to expect, else its own user or root (whom it cannot keep out anyway).
fn broker_trusted(broker_uid: u32, own_uid: u32, expected: Option<u32>) -> bool {
    match expected {
        Some(uid) => broker_uid == uid,
        None => broker_uid == own_uid || broker_uid == 0,
    }
}

/// The largest frame to take from a broker whose welcome announced `max_frame`.
fn read_limit(max_frame: u32) -> u32 {
    max_frame.clamp(SMALLEST_READ_LIMIT, LARGEST_READ_LIMIT)
}

/// Connects again, waiting longer after each failure, until it works.
pub(crate) async fn reconnect(addr: &BusAddr, options: &Options) -> Connection {
    let mut delay = FIRST_RETRY;
    loop {
        tokio::time::sleep(delay).await;
        match open(addr, options).await {
            Ok(connection) => return connection,
            Err(e) => {
                debug!(error = %e, "reconnect failed");
                delay = (delay * 2).min(LONGEST_RETRY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_is_trusted_as_the_clients_user_or_root_or_exactly_the_expected_user() {
        assert!(broker_trusted(1000, 1000, None), "our own user");
        assert!(broker_trusted(0, 1000, None), "root");
        assert!(!broker_trusted(1001, 1000, None), "another user");
        assert!(broker_trusted(1001, 1000, Some(1001)), "the expected user");
        assert!(
            !broker_trusted(1000, 1000, Some(1001)),
            "only the expected user"
        );
        assert!(!broker_trusted(0, 1000, Some(1001)), "not even root");
    }

    #[test]
    fn an_untrusted_broker_error_names_both_users() {
        let e = Error::UntrustedBroker {
            addr: "unix:/run/bus.sock".into(),
            broker_uid: 1001,
            own_uid: 1000,
            expected: None,
        };
        let text = e.to_string();
        assert!(
            text.contains("uid 1001") && text.contains("uid 1000"),
            "{text}"
        );
        assert!(text.contains("PLEXUS_BROKER_UID=1001"), "{text}");
    }

    #[test]
    fn frames_from_the_broker_are_limited_by_its_welcome_within_bounds() {
        let default = plexus_proto::DEFAULT_MAX_FRAME;
        assert_eq!(read_limit(default), default);
        assert_eq!(read_limit(0), SMALLEST_READ_LIMIT);
        assert_eq!(read_limit(4096), SMALLEST_READ_LIMIT);
        assert_eq!(read_limit(u32::MAX), LARGEST_READ_LIMIT);
    }
}
