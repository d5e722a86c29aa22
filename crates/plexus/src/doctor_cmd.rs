//! `plexus doctor`, `plexus version --extended` and `plexus envinfo`: what is wrong, what is here.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use clap::Args;
use plexus_client::{BusAddr, default_bus};
use serde_json::{Value, json};

use crate::bus::Global;
use crate::exit::{Failure, INVALID_ARGS, NO_BROKER, OK, TRANSPORT};

/// `plexus doctor`.
#[derive(Args, Debug)]
pub struct DoctorArgs {}

/// The checks' findings: printed as they come, or as one JSON object at the end.
struct Report {
    json: bool,
    checks: Vec<Value>,
    worst: u8,
}

impl Report {
    fn line(&mut self, status: &str, text: String, fix: Option<&str>) {
        if self.json {
            self.checks
                .push(json!({ "status": status.trim(), "check": text, "fix": fix }));
        } else {
            println!("{status:<5} {text}");
            if let Some(fix) = fix {
                println!("      fix: {fix}");
            }
        }
    }

    fn ok(&mut self, text: String) {
        self.line("ok", text, None);
    }

    fn warn(&mut self, text: String, fix: &str) {
        self.line("WARN", text, Some(fix));
    }

    fn fail(&mut self, code: u8, text: String, fix: Option<&str>) {
        self.line("FAIL", text, fix);
        if self.worst == OK {
            self.worst = code;
        }
    }
}

fn resolve(g: &Global) -> Result<BusAddr, Failure> {
    match &g.bus {
        Some(text) => BusAddr::parse(text).map_err(|e| Failure::new(INVALID_ARGS, e.to_string())),
        None => default_bus().map_err(Failure::from),
    }
}

/// Runs the checks, printing one line each and what to fix.
pub async fn doctor(_args: DoctorArgs, g: Global) -> Result<u8, Failure> {
    let addr = resolve(&g)?;
    let source = if g.bus.is_some() {
        "--bus"
    } else if std::env::var_os("PLEXUS_BUS").is_some() {
        "PLEXUS_BUS"
    } else {
        "the default path"
    };
    let mut report = Report {
        json: g.json,
        checks: Vec::new(),
        worst: OK,
    };
    report.ok(format!("bus address {addr} (from {source})"));
    if let BusAddr::Unix(path) = &addr {
        check_socket_path(path, &mut report);
    }
    match g.connect("doctor").await {
        Ok(client) => {
            let info = client.broker_info();
            report.ok(format!(
                "a broker answers: version {}, frames up to {} bytes, this is connection {}",
                info.version, info.max_frame, info.conn_id
            ));
            match client.ping().await {
                Ok(rtt) => report.ok(format!("ping {:.1} µs", rtt.as_secs_f64() * 1e6)),
                Err(e) => report.fail(TRANSPORT, format!("ping: {e}"), None),
            }
            // Access control.
            match client.call::<_, Value>("plexus", "whoami", &()).await {
                Ok(whoami) => {
                    for line in crate::doctor_access::explain(&whoami) {
                        report.ok(line);
                    }
                }
                Err(e) => report.warn(
                    format!("plexus.whoami: {e}"),
                    "a broker older than access control cannot explain its policy; upgrade it",
                ),
            }
        }
        Err(f) => report.fail(
            f.code,
            f.message,
            Some(
                "start a broker with `plexus broker` (or `systemctl --user start plexus.socket`), or point --bus / PLEXUS_BUS at a running one",
            ),
        ),
    }
    if g.json {
        let socket = match &addr {
            BusAddr::Unix(path) => Some(path.display().to_string()),
            BusAddr::Tcp(_) => None,
        };
        println!(
            "{}",
            json!({ "bus": addr.to_string(), "socket": socket, "source": source, "ok": report.worst == OK, "checks": report.checks })
        );
    } else if report.worst == OK {
        println!("all good");
    }
    Ok(report.worst)
}

fn check_socket_path(path: &Path, report: &mut Report) {
    let dir = path.parent();
    match dir.map(std::fs::metadata) {
        Some(Ok(meta)) => {
            let mode = meta.permissions().mode() & 0o777;
            let mine = meta.uid() == rustix::process::getuid().as_raw();
            if mode & 0o077 != 0
                && dir.is_some_and(|d| {
                    d.ends_with("plexus") || d.to_string_lossy().contains("plexus-")
                })
            {
                report.warn(
                    format!(
                        "directory {} is mode {mode:o}; others can reach the bus",
                        dir.map(|p| p.display().to_string()).unwrap_or_default()
                    ),
                    "chmod 700 it",
                );
            } else {
                report.ok(format!(
                    "directory mode {mode:o}{}",
                    if mine { ", owned by you" } else { "" }
                ));
            }
        }
        Some(Err(_)) | None => report.fail(
            NO_BROKER,
            format!("directory of {} does not exist", path.display()),
            Some("start the broker, which creates it"),
        ),
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                report.warn(
                    format!(
                        "socket {} is mode {mode:o}: others may connect",
                        path.display()
                    ),
                    "restart the broker, which makes it 0600",
                );
            } else {
                report.ok(format!("socket {} exists, mode {mode:o}", path.display()));
            }
        }
        Ok(_) => report.fail(
            NO_BROKER,
            format!("{} exists but is not a socket", path.display()),
            Some("remove it, or choose another --socket"),
        ),
        Err(_) => report.fail(NO_BROKER, format!("no socket at {}", path.display()), None),
    }
}

/// `plexus version`.
#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Also the protocol version, target and build profile.
    #[arg(long)]
    extended: bool,
}

/// Prints the version.
pub fn version(args: &VersionArgs, json: bool) -> u8 {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let metrics = if cfg!(feature = "http") { "on" } else { "off" };
    let target = format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS);
    if json {
        let mut out = json!({ "version": env!("CARGO_PKG_VERSION") });
        if args.extended {
            out["protocol"] = json!(plexus_proto::VERSION);
            out["target"] = json!(target);
            out["profile"] = json!(profile);
            out["metrics"] = json!(metrics == "on");
        }
        println!("{out}");
        return OK;
    }
    println!("plexus {}", env!("CARGO_PKG_VERSION"));
    if args.extended {
        println!("protocol version {}", plexus_proto::VERSION);
        println!("target {target}");
        println!("profile {profile}");
        println!("metrics {metrics}");
    }
    OK
}

/// Prints what plexus sees of its environment.
pub fn envinfo(json: bool) -> u8 {
    let var = |name: &str| std::env::var(name).ok();
    let bus = default_bus().map(|a| a.to_string());
    if json {
        println!(
            "{}",
            json!({
                "version": env!("CARGO_PKG_VERSION"),
                "os": std::env::consts::OS,
                "arch": std::env::consts::ARCH,
                "uid": rustix::process::getuid().as_raw(),
                "PLEXUS_BUS": var("PLEXUS_BUS"),
                "XDG_RUNTIME_DIR": var("XDG_RUNTIME_DIR"),
                "bus": bus.as_ref().ok(),
                "bus_error": bus.as_ref().err().map(ToString::to_string),
            })
        );
        return OK;
    }
    let shown = |v: Option<String>| v.unwrap_or_else(|| "(unset)".to_owned());
    println!("plexus {}", env!("CARGO_PKG_VERSION"));
    println!("os {} {}", std::env::consts::OS, std::env::consts::ARCH);
    println!("uid {}", rustix::process::getuid().as_raw());
    println!("PLEXUS_BUS {}", shown(var("PLEXUS_BUS")));
    println!("XDG_RUNTIME_DIR {}", shown(var("XDG_RUNTIME_DIR")));
    match bus {
        Ok(addr) => println!("bus {addr}"),
        Err(e) => println!("bus (invalid: {e})"),
    }
    OK
}
