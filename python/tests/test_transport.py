"""Reaching the broker: the address from the environment, TCP, and the broker's frame limit."""

from __future__ import annotations

import asyncio
import socket
from typing import Callable

import pytest

import plexus
import plexus.aio
from conftest import Broker, wait_until

WAIT = 10.0


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def accepts_tcp(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError:
        return False
    return True


def test_bus_from_environment(broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXUS_BUS", broker.bus)
    with plexus.connect(name="from-env") as bus:
        assert bus.ping()["conn_id"] == bus.conn_id
        assert str(bus.address) == broker.bus
        assert bus.broker_version


def test_tcp_sync_and_asyncio(start_broker: Callable[..., Broker]) -> None:
    port = free_tcp_port()
    broker = start_broker("--tcp", f"127.0.0.1:{port}")
    wait_until(lambda: accepts_tcp(port), WAIT, f"the broker to listen on TCP port {port}")
    tcp = f"tcp://127.0.0.1:{port}"
    worker = plexus.connect(tcp, "tcp-worker")
    try:
        worker.serve("math", {"add": lambda a, b: {"sum": a + b}})
        assert broker.client().call("math", "add", {"a": 10, "b": 32}) == {"sum": 42}

        async def call() -> object:
            async with await plexus.aio.connect(tcp) as bus:
                return await bus.call("math", "add", [1, 2])

        assert asyncio.run(asyncio.wait_for(call(), 30)) == {"sum": 3}
    finally:
        worker.close()


def test_frames_over_the_broker_limit_are_refused_locally(start_broker: Callable[..., Broker]) -> None:
    broker = start_broker("--max-frame", "4096")
    bus = broker.client()
    assert bus.max_frame == 4096
    with pytest.raises(plexus.FrameTooLarge):
        bus.publish("big.event", "x" * 5000)
    worker = broker.client("worker")
    worker.serve("big", {"make": lambda n: "x" * n})
    assert len(bus.call("big", "make", 100)) == 100
    with pytest.raises(plexus.Internal) as info:
        bus.call("big", "make", 5000)
    assert "too large" in info.value.message
    assert bus.ping()["pong"] is True
