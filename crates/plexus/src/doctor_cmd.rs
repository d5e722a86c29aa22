//! `plexus doctor`, `plexus version --extended` and `plexus envinfo`: what is wrong, what is here.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use clap::Args;
use plexus_client::{BusAddr, default_bus};

use crate::bus::BusArgs;
use crate::exit::{Failure, INVALID_ARGS, NO_BROKER, OK, TRANSPORT};

/// `plexus doctor`.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[command(flatten)]
    bus: BusArgs,
}

fn resolve(bus: &BusArgs) -> Result<BusAddr, Failure> {
    match &bus.bus {
        Some(text) => BusAddr::parse(text).map_err(|e| Failure::new(INVALID_ARGS, e.to_string())),
        None => default_bus().map_err(Failure::from),
    }
}

/// Runs the checks, printing one line each and what to fix.
pub async fn doctor(args: DoctorArgs) -> Result<u8, Failure> {
    let addr = resolve(&args.bus)?;
    let source = if args.bus.bus.is_some() {
        "--bus"
    } else if std::env::var_os("PLEXUS_BUS").is_some() {
        "PLEXUS_BUS"
    } else {
        "the default path"
    };
    println!("ok    bus address {addr} (from {source})");
    let mut worst = OK;
    if let BusAddr::Unix(path) = &addr {
        worst = check_socket_path(path);
    }
    match args.bus.connect().await {
        Ok(client) => {
            let info = client.broker_info();
            println!(
                "ok    a broker answers: version {}, frames up to {} bytes, this is connection {}",
                info.version, info.max_frame, info.conn_id
            );
            match client.ping().await {
                Ok(rtt) => println!("ok    ping {:.1} µs", rtt.as_secs_f64() * 1e6),
                Err(e) => {
                    println!("FAIL  ping: {e}");
                    worst = TRANSPORT;
                }
            }
        }
        Err(f) => {
            println!("FAIL  {}", f.message);
            println!(
                "      fix: start a broker with `plexus broker` (or `systemctl --user start plexus.socket`), or point --bus / PLEXUS_BUS at a running one"
            );
            worst = f.code;
        }
    }
    if worst == OK {
        println!("all good");
    }
    Ok(worst)
}

fn check_socket_path(path: &Path) -> u8 {
    let mut worst = OK;
    match path.parent().map(std::fs::metadata) {
        Some(Ok(meta)) => {
            let mode = meta.permissions().mode() & 0o777;
            let mine = meta.uid() == rustix::process::getuid().as_raw();
            if mode & 0o077 != 0
                && path.parent().is_some_and(|d| {
                    d.ends_with("plexus") || d.to_string_lossy().contains("plexus-")
                })
            {
                println!(
                    "WARN  directory {} is mode {mode:o}; others can reach the bus — fix: chmod 700 it",
                    path.parent()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                );
            } else {
                println!(
                    "ok    directory mode {mode:o}{}",
                    if mine { ", owned by you" } else { "" }
                );
            }
        }
        Some(Err(_)) | None => {
            println!(
                "FAIL  directory of {} does not exist — fix: start the broker, which creates it",
                path.display()
            );
            worst = NO_BROKER;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                println!(
                    "WARN  socket {} is mode {mode:o} — others may connect; the broker makes it 0600",
                    path.display()
                );
            } else {
                println!("ok    socket {} exists, mode {mode:o}", path.display());
            }
        }
        Ok(_) => {
            println!(
                "FAIL  {} exists but is not a socket — fix: remove it, or choose another --socket",
                path.display()
            );
            worst = NO_BROKER;
        }
        Err(_) => {
            println!("FAIL  no socket at {}", path.display());
            worst = NO_BROKER;
        }
    }
    worst
}

/// `plexus version`.
#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Also the protocol version, target and build profile.
    #[arg(long)]
    extended: bool,
}

/// Prints the version.
pub fn version(args: &VersionArgs) -> u8 {
    println!("plexus {}", env!("CARGO_PKG_VERSION"));
    if args.extended {
        println!("protocol version {}", plexus_proto::VERSION);
        println!("target {}-{}", std::env::consts::ARCH, std::env::consts::OS);
        println!(
            "profile {}",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
        println!(
            "metrics {}",
            if cfg!(feature = "metrics") {
                "on"
            } else {
                "off"
            }
        );
    }
    OK
}

/// Prints what plexus sees of its environment.
pub fn envinfo() -> u8 {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| "(unset)".to_owned());
    println!("plexus {}", env!("CARGO_PKG_VERSION"));
    println!("os {} {}", std::env::consts::OS, std::env::consts::ARCH);
    println!("uid {}", rustix::process::getuid().as_raw());
    println!("PLEXUS_BUS {}", var("PLEXUS_BUS"));
    println!("XDG_RUNTIME_DIR {}", var("XDG_RUNTIME_DIR"));
    match default_bus() {
        Ok(addr) => println!("bus {addr}"),
        Err(e) => println!("bus (invalid: {e})"),
    }
    OK
}
