//! Bus addresses (`unix:/path`, `tcp://host:port`, a bare path) and the default socket path.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a bus listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusAddr {
    /// A Unix socket path.
    Unix(PathBuf),
    /// A TCP `host:port`.
    Tcp(String),
}

/// Why a bus address could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad bus address {text:?}: {why} (use unix:/path, tcp://host:port, or a path)")]
pub struct AddrError {
    text: String,
    why: &'static str,
}

impl BusAddr {
    /// Parses `unix:/path`, `unix:///path`, `tcp://host:port`, or a bare path.
    pub fn parse(text: &str) -> Result<BusAddr, AddrError> {
        let err = |why| AddrError {
            text: text.to_owned(),
            why,
        };
        if let Some(rest) = text.strip_prefix("tcp://") {
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| err("no port"))?;
            if host.is_empty() {
                return Err(err("no host"));
            }
            port.parse::<u16>()
                .map_err(|_| err("port is not a number from 0 to 65535"))?;
            return Ok(BusAddr::Tcp(rest.to_owned()));
        }
        let path = text
            .strip_prefix("unix://")
            .or_else(|| text.strip_prefix("unix:"))
            .unwrap_or(text);
        if path.is_empty() {
            return Err(err("empty path"));
        }
        if text.contains("://") && !text.starts_with("unix://") {
            return Err(err("unknown scheme"));
        }
        Ok(BusAddr::Unix(PathBuf::from(path)))
    }
}

impl fmt::Display for BusAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            BusAddr::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// The default socket: `$XDG_RUNTIME_DIR/plexus/bus.sock`, else `/tmp/plexus-$UID/bus.sock`.
pub fn default_socket_path(xdg_runtime_dir: Option<&OsStr>, uid: u32) -> PathBuf {
    match xdg_runtime_dir.filter(|d| !d.is_empty()) {
        Some(dir) => Path::new(dir).join("plexus").join("bus.sock"),
        None => PathBuf::from(format!("/tmp/plexus-{uid}/bus.sock")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        assert_eq!(
            BusAddr::parse("unix:/a/b.sock"),
            Ok(BusAddr::Unix("/a/b.sock".into()))
        );
        assert_eq!(
            BusAddr::parse("unix:///a/b.sock"),
            Ok(BusAddr::Unix("/a/b.sock".into()))
        );
        assert_eq!(
            BusAddr::parse("/a/b.sock"),
            Ok(BusAddr::Unix("/a/b.sock".into()))
        );
        assert_eq!(
            BusAddr::parse("tcp://127.0.0.1:5123"),
            Ok(BusAddr::Tcp("127.0.0.1:5123".into()))
        );
        assert!(BusAddr::parse("tcp://127.0.0.1").is_err());
        assert!(BusAddr::parse("tcp://:80").is_err());
        assert!(BusAddr::parse("http://x:1").is_err());
        assert!(BusAddr::parse("").is_err());
    }

    #[test]
    fn default_path() {
        let xdg = OsStr::new("/run/user/1000");
        assert_eq!(
            default_socket_path(Some(xdg), 1000),
            PathBuf::from("/run/user/1000/plexus/bus.sock")
        );
        assert_eq!(
            default_socket_path(None, 1000),
            PathBuf::from("/tmp/plexus-1000/bus.sock")
        );
        assert_eq!(
            default_socket_path(Some(OsStr::new("")), 7),
            PathBuf::from("/tmp/plexus-7/bus.sock")
        );
    }
}
