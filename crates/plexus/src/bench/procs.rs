//! The processes a bench runs: its own broker, and helpers (`plexus __bench-helper ROLE`) that
//! say `ready` on stdout, answer with lines there, and exit when their stdin closes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::exit::{Failure, INTERNAL, TIMEOUT};

/// How long a helper or broker may take to start.
const START: Duration = Duration::from_secs(20);

/// This program, to run the broker and helpers with.
fn exe() -> Result<PathBuf, Failure> {
    std::env::current_exe()
        .map_err(|e| Failure::new(INTERNAL, format!("cannot find the plexus binary: {e}")))
}

/// A broker `plexus bench` started: killed when dropped.
pub struct Broker {
    child: Child,
    /// Its Unix socket address, `unix:PATH`.
    pub unix: String,
    /// Its TCP address, `tcp://127.0.0.1:PORT`, when it listens on TCP.
    pub tcp: Option<String>,
}

impl Broker {
    /// Starts `plexus broker` on `dir/NAME.sock` (and loopback TCP if `tcp`) with `threads`
    /// runtime threads, and waits until it accepts connections.
    pub async fn start(
        dir: &Path,
        name: &str,
        tcp: bool,
        threads: usize,
    ) -> Result<Broker, Failure> {
        Broker::start_with(dir, name, tcp, threads, &[]).await
    }

    /// [`Broker::start`] with `extra` flags (cluster).
    pub async fn start_with(
        dir: &Path,
        name: &str,
        tcp: bool,
        threads: usize,
        extra: &[String],
    ) -> Result<Broker, Failure> {
        let socket = dir.join(format!("{name}.sock"));
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).map_err(|e| {
            Failure::new(
                INTERNAL,
                format!("cannot create {}: {e}", log_path.display()),
            )
        })?;
        let mut cmd = Command::new(exe()?);
        cmd.arg("broker")
            .arg("--socket")
            .arg(&socket)
            .arg("--threads")
            .arg(threads.to_string())
            .args(extra)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        let tcp = if tcp {
            let port = free_port()?;
            cmd.arg("--tcp").arg(format!("127.0.0.1:{port}"));
            Some(format!("tcp://127.0.0.1:{port}"))
        } else {
            None
        };
        let child = cmd
            .spawn()
            .map_err(|e| Failure::new(INTERNAL, format!("cannot start the broker: {e}")))?;
        let broker = Broker {
            child,
            unix: format!("unix:{}", socket.display()),
            tcp,
        };
        let started = Instant::now();
        while tokio::net::UnixStream::connect(&socket).await.is_err() {
            if started.elapsed() > START {
                let said = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(Failure::new(
                    TIMEOUT,
                    format!("the bench's broker did not start: {}", said.trim()),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(broker)
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// A loopback TCP port nobody listens on right now.
fn free_port() -> Result<u16, Failure> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Failure::new(INTERNAL, format!("no free TCP port: {e}")))
}

/// A command that runs each helper under a profiler, e.g. `valgrind --tool=callgrind`.
const WRAP_ENV: &str = "PLEXUS_BENCH_WRAP";

/// A running helper process: killed when dropped (its stdin closes, and it is killed).
pub struct Helper {
    _child: Child,
    _stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Helper {
    /// Starts `plexus [--bus BUS] __bench-helper ARGS...` and waits for its `ready`.
    /// With `PLEXUS_BENCH_WRAP` set, the helper runs under that command (a profiler).
    pub async fn start(bus: Option<&str>, args: &[&str]) -> Result<Helper, Failure> {
        let wrap = std::env::var(WRAP_ENV).unwrap_or_default();
        let mut wrap = wrap.split_whitespace();
        let mut cmd = match wrap.next() {
            Some(program) => {
                let mut cmd = Command::new(program);
                cmd.args(wrap).arg(exe()?);
                cmd
            }
            None => Command::new(exe()?),
        };
        if let Some(bus) = bus {
            cmd.arg("--bus").arg(bus);
        }
        cmd.arg("__bench-helper")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| Failure::new(INTERNAL, format!("cannot start a bench helper: {e}")))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Failure::new(INTERNAL, "bench helper without stdout"))?;
        let mut helper = Helper {
            _child: child,
            _stdin: stdin,
            lines: BufReader::new(stdout).lines(),
        };
        let line = helper.line(START).await?;
        if line != "ready" {
            return Err(Failure::new(
                INTERNAL,
                format!("bench helper {args:?} said {line:?} instead of ready"),
            ));
        }
        Ok(helper)
    }

    /// The helper's next line on stdout, waiting at most `within`.
    pub async fn line(&mut self, within: Duration) -> Result<String, Failure> {
        self.try_line(within)
            .await?
            .ok_or_else(|| Failure::new(TIMEOUT, "a bench helper did not answer in time"))
    }

    /// The helper's next line on stdout, or `None` if it says nothing within `within` (a line
    /// that comes later is read by the next call).
    pub async fn try_line(&mut self, within: Duration) -> Result<Option<String>, Failure> {
        match tokio::time::timeout(within, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Ok(Some(line)),
            Ok(_) => Err(Failure::new(INTERNAL, "a bench helper exited early")),
            Err(_) => Ok(None),
        }
    }
}

/// Resident memory of process `pid` in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Result<u64, Failure> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| Failure::new(INTERNAL, format!("cannot read /proc/{pid}/status: {e}")))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| Failure::new(INTERNAL, format!("no VmRSS in /proc/{pid}/status")))
}
