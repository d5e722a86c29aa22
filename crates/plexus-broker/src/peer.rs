//! What the broker knows about a connected peer: its transport, credentials and name.
//!
//! A Unix socket peer's credentials are read once, at connect (SO_PEERCRED for pid, uid and gid,
//! `/proc/PID/status` for the supplementary groups), and fixed for the connection's life, as
//! dbus-broker does. A pidfd taken at connect pins the process: the groups are trusted only if
//! the process the pidfd names is still alive after they were read, so a pid reused in between
//! cannot lend its groups.

use std::os::fd::OwnedFd;
use std::sync::Arc;

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
    /// Primary group id, for Unix socket peers.
    pub gid: Option<u32>,
    /// Supplementary group ids, for Unix socket peers whose process could be read at connect.
    pub groups: Vec<u32>,
    /// Executable path, when /proc tells.
    pub exe: Option<String>,
    /// `unix` or `tcp`.
    pub transport: &'static str,
    /// Remote address for TCP peers.
    pub addr: Option<String>,
    /// Whether the peer presented the broker's token in its `hello`.
    pub token: bool,
    /// A pidfd for the peer's process, where the kernel has them: it names the process, never a
    /// later one that reuses its pid.
    #[serde(skip)]
    pub pidfd: Option<Arc<OwnedFd>>,
}

impl PeerInfo {
    /// Credentials of a Unix socket peer (SO_PEERCRED), its groups and a pidfd.
    pub fn from_unix(stream: &UnixStream) -> PeerInfo {
        let cred = stream.peer_cred().ok();
        let pid = cred.as_ref().and_then(|c| c.pid());
        let pidfd = pid.and_then(rustix::process::Pid::from_raw).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        let groups = pid
            .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
            .filter(|_| pidfd.as_ref().is_none_or(still_alive))
            .map(|status| supplementary_groups(&status))
            .unwrap_or_default();
        let exe = pid
            .and_then(|p| std::fs::read_link(format!("/proc/{p}/exe")).ok())
            .map(|p| p.display().to_string());
        PeerInfo {
            client: String::new(),
            pid,
            uid: cred.as_ref().map(|c| c.uid()),
            gid: cred.as_ref().map(|c| c.gid()),
            groups,
            exe,
            transport: "unix",
            addr: None,
            token: false,
            pidfd: pidfd.map(Arc::new),
        }
    }

    /// A TCP peer: only its address is known.
    pub fn from_tcp(addr: std::net::SocketAddr) -> PeerInfo {
        PeerInfo {
            client: String::new(),
            pid: None,
            uid: None,
            gid: None,
            groups: Vec::new(),
            exe: None,
            transport: "tcp",
            addr: Some(addr.to_string()),
            token: false,
            pidfd: None,
        }
    }

    /// Whether the peer is in group `gid`, as its primary or a supplementary group.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == Some(gid) || self.groups.contains(&gid)
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

/// Whether the process a pidfd names has not exited: a pidfd becomes readable when it does.
fn still_alive(pidfd: &OwnedFd) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&now)), Ok(0))
}

/// The supplementary groups on the `Groups:` line of a `/proc/PID/status` text.
fn supplementary_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|groups| {
            groups
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_come_from_the_status_groups_line() {
        let status = "Name:\tcat\nUid:\t0\t0\t0\t0\nGroups:\t4 24 27 \nNgid:\t0\n";
        assert_eq!(supplementary_groups(status), vec![4, 24, 27]);
        assert_eq!(supplementary_groups("Groups:\t\n"), Vec::<u32>::new());
        assert_eq!(supplementary_groups("Name:\tx\n"), Vec::<u32>::new());
    }

    #[tokio::test]
    async fn a_unix_peer_is_this_process_with_its_groups_and_a_pidfd() {
        let (a, _b) = UnixStream::pair().expect("socket pair");
        let peer = PeerInfo::from_unix(&a);
        assert_eq!(peer.pid, Some(std::process::id() as i32));
        assert_eq!(peer.uid, Some(rustix::process::getuid().as_raw()));
        assert_eq!(peer.gid, Some(rustix::process::getgid().as_raw()));
        let own = std::fs::read_to_string("/proc/self/status").expect("own status");
        assert_eq!(peer.groups, supplementary_groups(&own));
        let pidfd = peer.pidfd.as_ref().expect("this kernel has pidfds");
        assert!(still_alive(pidfd), "this process is alive");
    }
}
