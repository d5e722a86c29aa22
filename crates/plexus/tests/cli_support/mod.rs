//! The `plexus` binary against a real `plexus broker` process on a socket in a temporary
//! directory: running commands, long-running ones whose output is read line by line, and
//! stopping and starting the broker under them. Every wait is a hang guard of [`WAIT`].

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long anything may take before the test fails as hung.
pub const WAIT: Duration = Duration::from_secs(10);

/// The `plexus` binary under test.
pub fn plexus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_plexus"))
}

/// Sends `signal` to the process `child`.
pub fn signal(child: &Child, signal: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_child(child), signal)
        .expect("send a signal");
}

/// Waits for `child` to exit.
pub fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "{what} did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Lines a process writes, read on a thread of their own.
pub struct Lines {
    lines: Receiver<String>,
    what: String,
}

impl Lines {
    /// The lines of `stream`, read on a thread; `what` names it in failures.
    pub fn read(stream: impl Read + Send + 'static, what: String) -> Lines {
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines { lines, what }
    }

    /// The next line.
    pub fn next(&self) -> String {
        self.try_next()
            .unwrap_or_else(|| panic!("{}: no line came", self.what))
    }

    /// The next line, or `None` once the stream ended.
    pub fn try_next(&self) -> Option<String> {
        match self.lines.recv_timeout(WAIT) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!("{}: no line within {WAIT:?}", self.what),
        }
    }

    /// The first line from now on that contains `text`.
    pub fn until(&self, text: &str) -> String {
        loop {
            match self.try_next() {
                Some(line) if line.contains(text) => return line,
                Some(_) => {}
                None => panic!("{}: ended without a line containing {text:?}", self.what),
            }
        }
    }

    /// Every line until the stream ends.
    pub fn rest(&self) -> Vec<String> {
        std::iter::from_fn(|| self.try_next()).collect()
    }
}

/// A long-running `plexus` process; killed when dropped.
pub struct Proc {
    pub child: Child,
    pub out: Lines,
    pub err: Lines,
}

impl Proc {
    /// Waits for it to exit.
    pub fn wait(&mut self) -> ExitStatus {
        wait_exit(&mut self.child, &self.out.what)
    }

    /// Sends it a signal.
    pub fn signal(&self, sig: rustix::process::Signal) {
        signal(&self.child, sig);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Any child process, killed (by its pid) when the test ends, however it ends.
pub struct Guard(pub Child);

impl Guard {
    /// Sends it SIGTERM and waits for it to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        signal(&self.0, rustix::process::Signal::TERM);
        wait_exit(&mut self.0, "process")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to `within` until something accepts connections on the Unix socket `socket`; fails
/// the test with `what` if nothing does.
pub fn wait_listening(socket: &Path, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while UnixStream::connect(socket).is_err() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends one NDJSON line on a new connection to `socket` and reads the answer line.
pub fn ndjson_request(socket: &Path, line: Value) -> Value {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream
        .write_all(format!("{line}\n").as_bytes())
        .expect("write");
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .expect("an answer line");
    serde_json::from_str(&answer).expect("JSON")
}

/// A broker process and the bus it serves.
pub struct Bus {
    pub dir: tempfile::TempDir,
    broker: Option<Child>,
}

impl Bus {
    /// Starts `plexus broker` on a socket in a new temporary directory.
    pub fn start() -> Bus {
        let mut bus = Bus {
            dir: tempfile::tempdir().expect("tempdir"),
            broker: None,
        };
        bus.start_broker();
        bus
    }

    /// The broker's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("bus.sock")
    }

    /// The bus address, as `PLEXUS_BUS` and `--bus` take it.
    pub fn addr(&self) -> String {
        format!("unix:{}", self.socket().display())
    }

    /// Starts the broker (again) on the socket and waits until it accepts connections.
    pub fn start_broker(&mut self) {
        assert!(self.broker.is_none(), "the broker is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .expect("broker log");
        let broker = plexus()
            .args(["broker", "--socket"])
            .arg(self.socket())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn plexus broker");
        self.broker = Some(broker);
        let deadline = Instant::now() + WAIT;
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            assert!(Instant::now() < deadline, "the broker did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the broker with SIGTERM and waits until it has exited; returns its exit status.
    pub fn stop_broker(&mut self) -> ExitStatus {
        let mut broker = self.broker.take().expect("a running broker");
        signal(&broker, rustix::process::Signal::TERM);
        wait_exit(&mut broker, "the broker")
    }

    /// Memfd payloads: the broker's process id, to count its open descriptors.
    pub fn broker_pid(&self) -> u32 {
        self.broker.as_ref().expect("a running broker").id()
    }

    /// What the broker wrote to stderr so far.
    pub fn broker_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// `plexus ARGS` with `PLEXUS_BUS` set to this bus.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = plexus();
        cmd.args(args).env("PLEXUS_BUS", self.addr());
        cmd
    }

    /// Runs `plexus ARGS` to the end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "")
    }

    /// Runs `plexus ARGS` to the end with `input` on its stdin.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plexus");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_owned();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let out = Lines::read(child.stdout.take().expect("stdout"), format!("{args:?}"));
        let err = Lines::read(child.stderr.take().expect("stderr"), format!("{args:?}"));
        let status = wait_exit(&mut child, &format!("plexus {args:?}"));
        let _ = writer.join();
        let join = |lines: Vec<String>| {
            lines
                .iter()
                .map(|l| format!("{l}\n"))
                .collect::<String>()
                .into_bytes()
        };
        Output {
            status,
            stdout: join(out.rest()),
            stderr: join(err.rest()),
        }
    }

    /// Starts a long-running `plexus ARGS`.
    pub fn spawn(&self, args: &[&str]) -> Proc {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plexus");
        let what = format!("plexus {args:?}");
        Proc {
            out: Lines::read(
                child.stdout.take().expect("stdout"),
                format!("{what} stdout"),
            ),
            err: Lines::read(
                child.stderr.take().expect("stderr"),
                format!("{what} stderr"),
            ),
            child,
        }
    }

    /// Starts `plexus echo --name NAME` and waits until it serves.
    pub fn echo(&self, name: &str) -> Proc {
        let proc = self.spawn(&["echo", "--name", name]);
        let first = proc.out.next();
        assert!(first.starts_with(&format!("serving {name}")), "{first}");
        proc
    }

    /// The broker's counters.
    pub fn stats(&self) -> Value {
        stdout_json(&self.run(&["stats", "--json"]))
    }

    /// Waits until the broker counts `n` subscriptions.
    pub fn wait_subscriptions(&self, n: u64) {
        let deadline = Instant::now() + WAIT;
        while self.stats()["subscriptions"] != n {
            assert!(Instant::now() < deadline, "{n} subscriptions were not made");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        if let Some(mut broker) = self.broker.take() {
            let _ = broker.kill();
            let _ = broker.wait();
        }
    }
}

/// The stdout of a command that succeeded, as JSON.
pub fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
