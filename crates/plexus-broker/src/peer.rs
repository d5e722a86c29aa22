//! What the broker knows about a connected peer: its transport, credentials and name.

use serde::Serialize;
use tokio::net::UnixStream;

/// A peer's identity, from the socket and its `hello`.
#[derive(Debug, Clone, Serialize)]
pub struct PeerInfo {
    /// The client name from `hello`.
    pub client: String,
    /// Process id, for Unix socket peers.
    pub pid: Option<i32>,
    /// User id, for Unix socket peers.
    pub uid: Option<u32>,
    /// Executable path, when /proc tells.
    pub exe: Option<String>,
    /// `unix` or `tcp`.
    pub transport: &'static str,
    /// Remote address for TCP peers.
    pub addr: Option<String>,
}

impl PeerInfo {
    /// Credentials of a Unix socket peer (SO_PEERCRED).
    pub fn from_unix(stream: &UnixStream) -> PeerInfo {
        let cred = stream.peer_cred().ok();
        let pid = cred.as_ref().and_then(|c| c.pid());
        let exe = pid
            .and_then(|p| std::fs::read_link(format!("/proc/{p}/exe")).ok())
            .map(|p| p.display().to_string());
        PeerInfo {
            client: String::new(),
            pid,
            uid: cred.map(|c| c.uid()),
            exe,
            transport: "unix",
            addr: None,
        }
    }

    /// A TCP peer: only its address is known.
    pub fn from_tcp(addr: std::net::SocketAddr) -> PeerInfo {
        PeerInfo {
            client: String::new(),
            pid: None,
            uid: None,
            exe: None,
            transport: "tcp",
            addr: Some(addr.to_string()),
        }
    }

    /// A short description for messages: `connection 3 (pid 4242, calc-worker)`.
    pub fn describe(&self, conn: u64) -> String {
        let mut parts = Vec::new();
        if let Some(pid) = self.pid {
            parts.push(format!("pid {pid}"));
        }
        if let Some(addr) = &self.addr {
            parts.push(addr.clone());
        }
        if !self.client.is_empty() {
            parts.push(self.client.clone());
        }
        if parts.is_empty() {
            format!("connection {conn}")
        } else {
            format!("connection {conn} ({})", parts.join(", "))
        }
    }
}
