"""Fixtures: the real broker binary on a temporary socket, clients and worker processes around it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import pytest

import plexus

REPO = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).resolve().parent / "workers"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def broker_binary() -> Path:
    """The broker binary: `$PLEXUS_BIN`, else `<repo>/target/debug/plexus`.

    A missing binary fails the tests when `PLEXUS_BIN` names it, and skips them otherwise.
    """
    given = os.environ.get("PLEXUS_BIN")
    path = Path(given) if given else REPO / "target" / "debug" / "plexus"
    if not path.is_file():
        if given:
            pytest.fail(f"PLEXUS_BIN={given} does not exist")
        pytest.skip(f"no broker binary at {path}: build it with `cargo build -p plexus-bus`")
    return path


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Polls `predicate` until it holds; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Broker:
    """A broker process listening on a Unix socket in a fresh temporary directory."""

    def __init__(self, binary: Path, extra_args: Sequence[str] = ()) -> None:
        self.dir = tempfile.mkdtemp(prefix="plexus-test-")
        self.path = os.path.join(self.dir, "bus.sock")
        self.bus = f"unix:{self.path}"
        self.log_path = os.path.join(self.dir, "broker.log")
        self._command = [str(binary), "broker", "--socket", self.path, *extra_args]
        self._clients: List[plexus.Client] = []
        self._procs: List[subprocess.Popen[bytes]] = []
        self.proc: "subprocess.Popen[bytes]"
        try:
            self.start_process()
        except BaseException:
            self.stop()
            raise

    def start_process(self) -> None:
        """Starts the broker process on this socket and waits until it accepts connections."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self._command, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._accepting, START_TIMEOUT, f"the broker to accept connections at {self.path}")

    def stop_process(self, sig: int = signal.SIGTERM) -> None:
        """Stops the broker process with `sig` and waits until it has exited; clients and children stay."""
        self.proc.send_signal(sig)
        self.proc.wait(STOP_TIMEOUT)

    def restart(self, sig: int = signal.SIGTERM) -> None:
        """Stops the broker process with `sig` and starts a new one on the same socket."""
        self.stop_process(sig)
        self.start_process()

    def _accepting(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"the broker exited with status {self.proc.returncode}:\n{self.log()}")
        if not os.path.exists(self.path):
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(self.path)
            except OSError:
                return False
        return True

    def log(self) -> str:
        """What the broker printed so far."""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def env(self) -> Dict[str, str]:
        """An environment for child processes: this bus in `PLEXUS_BUS`, this `plexus` importable."""
        env = dict(os.environ)
        env["PLEXUS_BUS"] = self.bus
        package_root = str(Path(plexus.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        return env

    def client(self, name: Optional[str] = None, **options: Any) -> plexus.Client:
        """A connected client (`options` go to `plexus.connect`), closed when the test ends."""
        c = plexus.connect(self.bus, name, **options)
        self._clients.append(c)
        return c

    def spawn(self, args: List[str]) -> "subprocess.Popen[bytes]":
        """A child process on this bus (killed when the test ends), output captured."""
        proc = subprocess.Popen(args, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._procs.append(proc)
        return proc

    def spawn_worker(self, name: str) -> "subprocess.Popen[bytes]":
        """A Python worker process serving `name` (see `workers/calc_worker.py`)."""
        return self.spawn([sys.executable, str(WORKERS / "calc_worker.py"), name])

    def stop(self) -> None:
        """Closes the clients, kills the children and the broker, removes the directory."""
        for c in self._clients:
            c.close()
        for proc in self._procs + ([self.proc] if hasattr(self, "proc") else []):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(STOP_TIMEOUT)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def broker() -> Iterator[Broker]:
    """A fresh broker for one test."""
    b = Broker(broker_binary())
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def start_broker() -> Iterator[Callable[..., Broker]]:
    """Starts brokers with extra command-line arguments; all are stopped when the test ends."""
    started: List[Broker] = []

    def start(*extra_args: str) -> Broker:
        b = Broker(broker_binary(), extra_args)
        started.append(b)
        return b

    try:
        yield start
    finally:
        for b in started:
            b.stop()
