//! Finding the bus: `PLEXUS_BUS`, else the default socket path.

use plexus_proto::{BusAddr, default_socket_path};

use crate::Error;

/// The bus address from `PLEXUS_BUS`, else the default Unix socket.
pub fn default_bus() -> Result<BusAddr, Error> {
    match std::env::var("PLEXUS_BUS") {
        Ok(text) if !text.is_empty() => Ok(BusAddr::parse(&text)?),
        _ => {
            let uid = rustix::process::getuid().as_raw();
            Ok(BusAddr::Unix(default_socket_path(
                std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
                uid,
            )))
        }
    }
}
