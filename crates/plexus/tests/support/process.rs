//! Real processes: the `plexus broker` under test (its pid, liveness, memory and log) and
//! `plexus echo` workers, each killed in `Drop` so that no test leaves a process behind.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::WAIT;

/// The `plexus` binary built for these tests.
pub fn plexus_bin() -> &'static str {
    env!("CARGO_BIN_EXE_plexus")
}

/// Memory of a process from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mem {
    /// Resident set size now (`VmRSS`).
    pub rss_kib: u64,
    /// Highest resident set size so far (`VmHWM`).
    pub hwm_kib: u64,
}

/// `VmRSS` and `VmHWM` of `pid`; `None` once the process is gone.
pub fn mem_of(pid: u32) -> Option<Mem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some(Mem {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// Sends `signal` to `child` unless it was already reaped (its pid may belong to another
/// process by then). An exited but unreaped child keeps its pid, so this never hits a stranger.
pub fn signal(child: &mut Child, signal: rustix::process::Signal) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = rustix::process::kill_process(rustix::process::Pid::from_child(child), signal);
}

/// Kills `child` with SIGKILL and reaps it.
pub fn kill_and_reap(child: &mut Child) {
    signal(child, rustix::process::Signal::KILL);
    let _ = child.wait();
}

/// Waits up to [`WAIT`] for `child` to exit; its exit code (`None` for a signal).
pub fn wait_exit(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        assert!(Instant::now() < deadline, "process did not exit in time");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `plexus broker` process on a socket in its own temporary directory, with its stderr in a
/// file there. Killed (SIGKILL) when dropped.
pub struct BrokerProc {
    child: Mutex<Child>,
    /// Its pid (changes on restart).
    pub pid: u32,
    /// Its Unix socket.
    pub socket: PathBuf,
    args: Vec<String>,
    starts: u32,
    /// Panic lines in the logs already reported (by [`BrokerProc::assert_alive`]) or attributed
    /// (by [`BrokerProc::mark_panics_seen`]).
    panics_seen: AtomicUsize,
    dir: tempfile::TempDir,
}

impl BrokerProc {
    /// Starts `plexus broker --socket DIR/bus.sock ARGS...` and waits until it accepts
    /// connections. Fails the test, with the broker's stderr, if it exits instead.
    pub fn start(args: &[&str]) -> BrokerProc {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("bus.sock");
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let child = spawn_broker(&socket, &args, &dir.path().join("broker-0.log"));
        let pid = child.id();
        let broker = BrokerProc {
            child: Mutex::new(child),
            pid,
            socket,
            args,
            starts: 0,
            panics_seen: AtomicUsize::new(0),
            dir,
        };
        broker.wait_listening();
        broker
    }

    /// The bus address, `unix:PATH`.
    pub fn addr(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// The directory the socket and logs are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("broker-{}.log", self.starts))
    }

    /// What the broker (this run of it) wrote to stderr.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self
                .child
                .lock()
                .expect("child")
                .try_wait()
                .expect("try_wait")
            {
                panic!(
                    "plexus broker {:?} exited at start ({status}); its stderr:\n{}",
                    self.args,
                    self.log()
                );
            }
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "plexus broker did not start listening in time"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The first line of every panic message in the logs of every run of this broker.
    pub fn logged_panics(&self) -> Vec<String> {
        (0..=self.starts)
            .filter_map(|run| {
                std::fs::read_to_string(self.dir.path().join(format!("broker-{run}.log"))).ok()
            })
            .flat_map(|text| {
                text.lines()
                    .filter(|l| l.contains("panicked"))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Panic lines logged since the last [`BrokerProc::assert_alive`] or
    /// [`BrokerProc::mark_panics_seen`].
    pub fn new_panics(&self) -> Vec<String> {
        let mut all = self.logged_panics();
        all.drain(..self.panics_seen.load(Ordering::Relaxed).min(all.len()));
        all
    }

    /// Takes the panics logged so far as accounted for (by an act that already failed).
    pub fn mark_panics_seen(&self) {
        self.panics_seen
            .store(self.logged_panics().len(), Ordering::Relaxed);
    }

    /// " (the broker logged: ...)" with the first new panic line, or nothing: explains a
    /// missing answer in a failure message.
    pub fn panic_note(&self) -> String {
        self.new_panics()
            .first()
            .map(|line| format!(" (the broker logged: {line})"))
            .unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn alive(&self) -> bool {
        matches!(self.child.lock().expect("child").try_wait(), Ok(None))
    }

    /// Fails the test if the broker process exited, or if its log shows a panic (a connection
    /// task that panicked leaves the process running but the bus broken).
    pub fn assert_alive(&self, after: &str) {
        if !self.alive() {
            panic!(
                "after {after}: the broker process died; its stderr ends with:\n{}",
                self.log_tail()
            );
        }
        let panics = self.new_panics();
        if let Some(line) = panics.first() {
            self.mark_panics_seen();
            panic!("after {after}: the broker panicked (the process lives on): {line}");
        }
    }

    /// Its memory now; fails the test if the process is gone.
    pub fn mem(&self) -> Mem {
        mem_of(self.pid).expect("broker process has a /proc entry")
    }

    /// Resident memory now, in MiB (0 once the process is gone).
    pub fn rss_mib(&self) -> u64 {
        mem_of(self.pid).map_or(0, |m| m.rss_kib / 1024)
    }

    /// Kills the broker with `sig` and reaps it.
    pub fn stop_with(&self, sig: rustix::process::Signal) -> Option<i32> {
        let mut child = self.child.lock().expect("child");
        signal(&mut child, sig);
        wait_exit(&mut child)
    }

    /// Starts the broker again on the same socket with the same arguments (after
    /// [`BrokerProc::stop_with`]).
    pub fn restart(&mut self) {
        self.starts += 1;
        let child = spawn_broker(&self.socket, &self.args, &self.log_path());
        self.pid = child.id();
        *self.child.lock().expect("child") = child;
        self.wait_listening();
    }
}

fn spawn_broker(socket: &Path, args: &[String], log: &Path) -> Child {
    let stderr = std::fs::File::create(log).expect("broker log file");
    Command::new(plexus_bin())
        .arg("broker")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn plexus broker")
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        if let Ok(child) = self.child.get_mut() {
            kill_and_reap(child);
        }
    }
}

/// A `plexus echo` worker process (answers every method with its params). Killed when dropped.
pub struct EchoProc {
    child: Child,
}

impl EchoProc {
    /// Starts `plexus echo --name NAME [--shared] --bus ADDR`. It registers asynchronously:
    /// wait for the name before calling it.
    pub fn start(addr: &str, name: &str, shared: bool) -> EchoProc {
        let mut cmd = Command::new(plexus_bin());
        cmd.args(["echo", "--name", name, "--bus", addr]);
        if shared {
            cmd.arg("--shared");
        }
        let child = cmd
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn plexus echo");
        EchoProc { child }
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill(mut self) {
        kill_and_reap(&mut self.child);
    }
}

impl Drop for EchoProc {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}
