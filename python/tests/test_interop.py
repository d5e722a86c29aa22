"""Python against the other peers: the Rust client examples, the CLI, and a ProcBridge client."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import Broker, broker_binary

WAIT = 20.0


def example(name: str) -> Path:
    """The built Rust example `name` beside the broker binary, or a skip when it is not built."""
    path = broker_binary().parent / "examples" / name
    if not path.is_file():
        pytest.skip(f"Rust example {name} is not built: cargo build -p plexus-bus-client --example {name}")
    return path


def serve_math(broker: Broker) -> None:
    """Serves `math.add` from this Python process."""
    worker = broker.client("python-worker")
    worker.serve("math", {"add": lambda a, b: {"sum": a + b}})


def json_lines(text: str) -> List[Any]:
    """The lines of `text` that parse as JSON."""
    values = []
    for line in text.splitlines():
        try:
            values.append(json.loads(line))
        except ValueError:
            continue
    return values


def test_rust_client_calls_python_worker(broker: Broker) -> None:
    client = example("calculator_client")
    serve_math(broker)
    done = subprocess.run([str(client)], env=broker.env(), capture_output=True, timeout=WAIT)
    output = done.stdout.decode()
    assert done.returncode == 0, f"{output}\n{done.stderr.decode()}"
    assert {"sum": 42} in json_lines(output), output


def test_python_client_calls_rust_worker(broker: Broker) -> None:
    worker = example("calculator_worker")
    broker.spawn([str(worker)])
    caller = broker.client("python-caller")
    caller.wait_for("math", timeout=WAIT)
    assert caller.call("math", "add", {"a": 10, "b": 32}) == {"sum": 42}


def test_python_subscriber_receives_cli_publish(broker: Broker) -> None:
    binary = broker_binary()
    probe = subprocess.run([str(binary), "publish", "--help"], capture_output=True, timeout=WAIT)
    if probe.returncode != 0:
        pytest.skip("the plexus CLI has no `publish` command yet")
    sub = broker.client("python-subscriber").subscribe("cli.*")
    done = subprocess.run(
        [str(binary), "publish", "--bus", broker.bus, "cli.test", '{"json":1}'],
        capture_output=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr.decode()
    event = sub.get(timeout=WAIT)
    assert event is not None and (event.topic, event.data) == ("cli.test", {"json": 1})


def test_procbridge_client_calls_python_worker(broker: Broker) -> None:
    procbridge = pytest.importorskip("procbridge", reason="the procbridge package is not installed")
    serve_math(broker)
    client = procbridge.Client.from_unix(broker.path)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(5.0)
    try:
        result: Dict[str, Any] = client.request("math.add", {"a": 10, "b": 32})
    except (procbridge.ProtocolError, OSError) as exc:
        pytest.skip(f"the broker does not speak ProcBridge yet ({type(exc).__name__}: {getattr(exc, 'message', exc)})")
    finally:
        socket.setdefaulttimeout(previous)
    assert result == {"sum": 42}


def test_python_client_gets_a_rust_workers_large_answer_inline(broker: Broker) -> None:
    """Memfd payloads: `plexus echo` (Rust) answers 1 MiB as a sealed memfd; the Python client,
    which does not ask for them, gets the bytes inline from the broker."""
    broker.spawn([str(broker_binary()), "echo", "--name", "big"])
    caller = broker.client("python-caller")
    caller.wait_for("big", timeout=WAIT)
    text = "".join(chr(ord("a") + i % 26) for i in range(1 << 20))
    assert caller.call("big", "echo", text, timeout=WAIT) == text
    nested = {"rows": [text[:300_000], text[300_000:]]}
    assert caller.call("big", "echo", nested, timeout=WAIT) == nested
