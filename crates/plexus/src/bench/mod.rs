//! `plexus bench`: runs named scenarios (all by default) against a broker it starts (or `--bus`),
//! with workers and subscribers in processes of their own, next to the socket floors measured in
//! the same run. `registry` lists the scenarios, one file each.

// Cluster.
mod cluster;
mod fanout;
mod floor;
pub mod helper;
mod memory;
mod payload;
mod procs;
mod registry;
mod report;
mod rpc_latency;
mod rpc_throughput;
// Contracts.
mod rpc_validated;
mod socket_floor;
mod tcp;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use plexus_client::Client;

use crate::bus::{Global, parse_duration};
use crate::exit::{Failure, INTERNAL, INVALID_ARGS, OK};
use procs::{Broker, Helper};
use report::Latencies;

/// `plexus bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Scenarios to run, in their order (all by default; `--list` names them).
    scenarios: Vec<String>,
    /// How long each measurement runs.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    duration: Duration,
    /// Run the bench, its broker, workers and subscribers all on one CPU.
    #[arg(long)]
    pin: bool,
    /// Runtime threads of the broker the bench starts (not with --bus).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print the scenarios and what each measures, and exit.
    #[arg(long)]
    list: bool,
    // Cluster.
    /// Run the `cluster` scenario (two brokers through a nats-server the bench starts), which
    /// the default run leaves out.
    #[arg(long)]
    cluster: bool,
}

/// What every scenario gets: the bus, how long to measure, and the floors measured so far.
pub struct Bench {
    /// The address of the bus under test.
    pub bus: String,
    /// How long each measurement runs.
    pub duration: Duration,
    /// Runtime threads of the broker the bench started (`None` with `--bus`).
    pub broker_threads: Option<usize>,
    dir: TempDir,
    next_id: Cell<u32>,
    floors: RefCell<HashMap<(bool, usize), Latencies>>,
    _broker: Option<Broker>,
}

/// The directory for the bench's sockets, removed with it.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Bench {
    /// A name no other object, topic or socket of this run has.
    pub fn unique(&self, what: &str) -> String {
        let n = self.next_id.get();
        self.next_id.set(n + 1);
        format!("bench-{what}-{}-{n}", std::process::id())
    }

    /// A path for a socket in the bench's directory.
    pub fn socket_path(&self, what: &str) -> String {
        let n = self.next_id.get();
        self.next_id.set(n + 1);
        format!(
            "unix:{}",
            self.dir.0.join(format!("{what}-{n}.sock")).display()
        )
    }

    /// A client connected to `bus`.
    pub async fn connect(&self, bus: &str) -> Result<Client, Failure> {
        Ok(Client::builder()
            .name("plexus-bench")
            .address(bus.to_owned())
            .reconnect(false)
            .connect()
            .await?)
    }

    /// Starts a helper process on `bus`: `plexus __bench-helper ARGS...`.
    pub async fn helper(&self, bus: &str, args: &[&str]) -> Result<Helper, Failure> {
        Helper::start(Some(bus), args).await
    }

    /// Starts an echo worker process on `bus`; returns it and the name it serves.
    pub async fn echo_worker(&self, bus: &str) -> Result<(Helper, String), Failure> {
        let name = self.unique("echo");
        let worker = self.helper(bus, &["echo-worker", &name]).await?;
        Ok((worker, name))
    }

    /// Starts a broker of its own (for the scenarios that measure a fresh one).
    pub async fn fresh_broker(&self, tcp: bool) -> Result<Broker, Failure> {
        let name = self.unique("broker");
        Broker::start(&self.dir.0, &name, tcp, self.broker_threads.unwrap_or(1)).await
    }

    // Cluster.
    /// Starts a broker of its own named `name` with `extra` flags.
    pub async fn fresh_broker_with(&self, name: &str, extra: &[String]) -> Result<Broker, Failure> {
        Broker::start_with(
            &self.dir.0,
            name,
            false,
            self.broker_threads.unwrap_or(1),
            extra,
        )
        .await
    }

    /// Round trips of `size`-byte messages to an echo process over a Unix socket, directly or
    /// (`relay`) through a relay process: measured once per run and size.
    pub async fn floor(&self, relay: bool, size: usize) -> Result<Latencies, Failure> {
        if let Some(known) = self.floors.borrow().get(&(relay, size)) {
            return Ok(known.clone());
        }
        let echo_addr = self.socket_path("floor-echo");
        let _echo = Helper::start(None, &["floor-echo", &echo_addr, &size.to_string()]).await?;
        let mut target = echo_addr.clone();
        let _relay = if relay {
            target = self.socket_path("floor-relay");
            Some(Helper::start(None, &["relay", &target, &echo_addr]).await?)
        } else {
            None
        };
        let samples = self.ping_pong(&target, size).await?;
        self.floors
            .borrow_mut()
            .insert((relay, size), samples.clone());
        Ok(samples)
    }

    /// Round trips of `size`-byte messages to the plain echo at `addr`, for the run's duration.
    pub async fn ping_pong(&self, addr: &str, size: usize) -> Result<Latencies, Failure> {
        let (addr, duration, min) = (addr.to_owned(), self.duration, min_rounds(size));
        let samples = tokio::task::spawn_blocking(move || {
            socket_floor::ping_pong(&addr, size, duration, min)
        })
        .await
        .map_err(|e| Failure::new(INTERNAL, e.to_string()))?
        .map_err(|e| Failure::new(INTERNAL, format!("socket floor: {e}")))?;
        Ok(Latencies::new(samples))
    }

    /// Times sequential calls of `params` to `object` through `client`, for the run's duration.
    pub async fn time_calls(
        &self,
        client: &Client,
        object: &str,
        params: &[u8],
    ) -> Result<Latencies, Failure> {
        let min = min_rounds(params.len());
        let mut samples = Vec::new();
        let started = Instant::now();
        while samples.len() < min || started.elapsed() < self.duration {
            let t = Instant::now();
            client
                .call_raw(object, "echo", params, Duration::from_secs(60))
                .await?;
            samples.push(t.elapsed());
        }
        Ok(Latencies::new(samples))
    }
}

/// The fewest round trips a measurement takes however short its duration.
fn min_rounds(size: usize) -> usize {
    if size >= 1 << 20 { 3 } else { 20 }
}

/// A JSON string of exactly `len` bytes (at least 2): `"xxx…"`.
pub fn json_string(len: usize) -> Vec<u8> {
    let mut body = vec![b'x'; len.max(2)];
    body[0] = b'"';
    let last = body.len() - 1;
    body[last] = b'"';
    body
}

/// The wire size of a call of `params` to `object`.
pub fn call_frame_len(object: &str, params: &[u8]) -> usize {
    let frame = plexus_proto::Frame::call(1, object, "echo", 60_000, params);
    let mut buf = bytes::BytesMut::new();
    plexus_proto::encode(&frame, &mut buf);
    buf.len()
}

/// Runs CPU-bound parts on one CPU: this process and (by inheritance) every process it starts.
fn pin_to_one_cpu() -> Result<(), Failure> {
    use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
    let allowed = sched_getaffinity(None)
        .map_err(|e| Failure::new(INTERNAL, format!("sched_getaffinity: {e}")))?;
    let cpu = (0..CpuSet::MAX_CPU)
        .find(|&c| allowed.is_set(c))
        .ok_or_else(|| Failure::new(INTERNAL, "no CPU allowed"))?;
    let mut one = CpuSet::new();
    one.set(cpu);
    sched_setaffinity(None, &one)
        .map_err(|e| Failure::new(INTERNAL, format!("sched_setaffinity: {e}")))
}

/// Raises the open-file limit to its hard maximum, for the memory scenario's 1,000 connections
/// (the broker it starts inherits it).
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
}

/// Runs the scenarios named in `args` (all by default) and prints one report per line.
pub async fn bench(args: BenchArgs, g: Global) -> Result<u8, Failure> {
    if args.list {
        for s in registry::ALL {
            println!("{:<15} {}", s.name, s.about);
        }
        return Ok(OK);
    }
    let mut scenarios = Vec::new();
    for name in &args.scenarios {
        let s = registry::find(name).ok_or_else(|| {
            let known: Vec<&str> = registry::ALL.iter().map(|s| s.name).collect();
            Failure::new(
                INVALID_ARGS,
                format!("no scenario {name:?}; there are: {}", known.join(", ")),
            )
        })?;
        scenarios.push(s);
    }
    // Cluster: `--cluster` adds the cluster scenario; the default run leaves it out (it needs
    // nats-server).
    if args.cluster {
        scenarios.extend(registry::find(cluster::SCENARIO.name));
    }
    if scenarios.is_empty() {
        scenarios = registry::ALL
            .iter()
            .filter(|s| s.name != cluster::SCENARIO.name)
            .collect();
    }
    if args.pin {
        pin_to_one_cpu()?;
    }
    raise_fd_limit();
    let dir = std::env::temp_dir().join(format!("plexus-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::new(INTERNAL, format!("cannot create {}: {e}", dir.display())))?;
    let dir = TempDir(dir);
    let (broker, bus, broker_threads) = match &g.bus {
        Some(bus) => (None, bus.clone(), None),
        None => {
            let broker = Broker::start(&dir.0, "bus", false, args.threads).await?;
            let bus = broker.unix.clone();
            (Some(broker), bus, Some(args.threads))
        }
    };
    let bench = Bench {
        bus,
        duration: args.duration,
        broker_threads,
        dir,
        next_id: Cell::new(0),
        floors: RefCell::new(HashMap::new()),
        _broker: broker,
    };
    for scenario in scenarios {
        for report in (scenario.run)(&bench).await? {
            let report = report.with("pinned", args.pin);
            if g.json {
                println!("{}", report.json_line());
            } else {
                println!("{}", report.human_line());
            }
        }
    }
    Ok(OK)
}
