//! Finding the bus: `PLEXUS_BUS`, else the default socket path; and whom to trust there:
//! `PLEXUS_BROKER_UID`.

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

/// The user the broker must run as, from `PLEXUS_BROKER_UID` (unset or empty: none).
pub fn broker_uid_from_env() -> Result<Option<u32>, Error> {
    match std::env::var("PLEXUS_BROKER_UID") {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::BadBrokerUid(text)),
        _ => Ok(None),
    }
}
