//! The floors: a process that echoes fixed-size messages over a plain socket, a relay that
//! copies bytes between a client and that echo (the four socket hops of a brokered call, with
//! no routing), and the blocking client that times round trips through either.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// A connected socket of either family.
pub enum Sock {
    /// A Unix stream socket.
    Unix(UnixStream),
    /// A TCP socket, with Nagle off.
    Tcp(TcpStream),
}

impl Sock {
    /// Connects to `unix:PATH` or `tcp:HOST:PORT`.
    pub fn connect(addr: &str) -> std::io::Result<Sock> {
        match addr.strip_prefix("tcp:") {
            Some(tcp) => {
                let s = TcpStream::connect(tcp)?;
                s.set_nodelay(true)?;
                Ok(Sock::Tcp(s))
            }
            None => Ok(Sock::Unix(UnixStream::connect(
                addr.strip_prefix("unix:").unwrap_or(addr),
            )?)),
        }
    }

    fn try_clone(&self) -> std::io::Result<Sock> {
        match self {
            Sock::Unix(s) => s.try_clone().map(Sock::Unix),
            Sock::Tcp(s) => s.try_clone().map(Sock::Tcp),
        }
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Sock::Unix(s) => s.shutdown(Shutdown::Write),
            Sock::Tcp(s) => s.shutdown(Shutdown::Write),
        };
    }
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Sock::Unix(s) => s.read(buf),
            Sock::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sock::Unix(s) => s.write(buf),
            Sock::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A listening socket of either family.
enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    fn bind(addr: &str) -> std::io::Result<Listener> {
        match addr.strip_prefix("tcp:") {
            Some(tcp) => TcpListener::bind(tcp).map(Listener::Tcp),
            None => {
                UnixListener::bind(addr.strip_prefix("unix:").unwrap_or(addr)).map(Listener::Unix)
            }
        }
    }

    fn accept(&self) -> std::io::Result<Sock> {
        match self {
            Listener::Unix(l) => l.accept().map(|(s, _)| Sock::Unix(s)),
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                Ok(Sock::Tcp(s))
            }
        }
    }
}

/// Listens on `addr`, then on a thread of its own answers every message of `size` bytes on
/// every connection with the same bytes, once the whole message is in.
pub fn serve_echo(addr: &str, size: usize) -> std::io::Result<()> {
    let listener = Listener::bind(addr)?;
    std::thread::spawn(move || {
        while let Ok(mut sock) = listener.accept() {
            std::thread::spawn(move || {
                let mut buf = vec![0u8; size];
                while sock.read_exact(&mut buf).is_ok() {
                    if sock.write_all(&buf).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(())
}

/// Listens on `addr`, then on a thread of its own connects every client to `upstream` and copies
/// bytes both ways as they come, a thread per direction.
pub fn serve_relay(addr: &str, upstream: &str) -> std::io::Result<()> {
    let listener = Listener::bind(addr)?;
    let upstream = upstream.to_owned();
    std::thread::spawn(move || {
        while let Ok(client) = listener.accept() {
            let Ok(server) = Sock::connect(&upstream) else {
                continue;
            };
            let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
                continue;
            };
            std::thread::spawn(move || pump(client, server2));
            std::thread::spawn(move || pump(server, client2));
        }
    });
    Ok(())
}

/// Copies `from` into `to` until `from` ends.
fn pump(mut from: Sock, mut to: Sock) {
    let mut buf = vec![0u8; 256 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    to.shutdown_write();
}

/// Sends `size`-byte messages to `addr` and waits for each echo, for `duration` and at least
/// `min_rounds` times: the round-trip times.
pub fn ping_pong(
    addr: &str,
    size: usize,
    duration: Duration,
    min_rounds: usize,
) -> std::io::Result<Vec<Duration>> {
    let mut sock = Sock::connect(addr)?;
    let msg = vec![7u8; size];
    let mut buf = vec![0u8; size];
    let mut samples = Vec::new();
    let started = Instant::now();
    while samples.len() < min_rounds || started.elapsed() < duration {
        let t = Instant::now();
        sock.write_all(&msg)?;
        sock.read_exact(&mut buf)?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}
