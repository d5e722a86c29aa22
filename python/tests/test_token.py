"""The token a broker on TCP asks for (`--token-file`): presented in `hello` by `token=` or
`$PLEXUS_TOKEN`, refused when missing or wrong, never sent on a Unix socket."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import time
from typing import Callable, Iterator

import pytest

import plexus
import plexus.aio
from conftest import Broker

TOKEN = "py-token-0123456789abcdef"


@pytest.fixture
def token_broker(start_broker: Callable[..., Broker]) -> Iterator[Broker]:
    """A broker on a loopback TCP port that asks TCP peers for TOKEN."""
    path = os.path.join(tempfile.mkdtemp(prefix="plexus-token-"), "token")
    with open(path, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(path, 0o600)
    yield start_broker("--tcp", "127.0.0.1:0", "--token-file", path)


def tcp_bus(broker: Broker) -> str:
    """The `tcp://` address the broker printed."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(broker.log_path) as log:
            found = re.search(r"listening on (tcp://\S+)", log.read())
        if found:
            return found.group(1)
        time.sleep(0.02)
    pytest.fail("the broker printed no TCP address")


def test_a_tcp_client_without_the_token_is_refused(token_broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLEXUS_TOKEN", raising=False)
    with pytest.raises(plexus.PermissionDenied, match="sent none in hello"):
        plexus.connect(tcp_bus(token_broker), reconnect=False)
    with pytest.raises(plexus.PermissionDenied, match="not the broker's"):
        plexus.connect(tcp_bus(token_broker), reconnect=False, token="py-token-0123456789abcdeX")


def test_the_right_token_connects_by_argument_or_environment(
    token_broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = plexus.connect(tcp_bus(token_broker), reconnect=False, token=TOKEN)
    try:
        assert client.ping()["pong"] is True
    finally:
        client.close()
    monkeypatch.setenv("PLEXUS_TOKEN", TOKEN)
    client = plexus.connect(tcp_bus(token_broker), reconnect=False)
    try:
        assert client.ping()["pong"] is True
    finally:
        client.close()


def test_the_asyncio_client_presents_the_token_too(token_broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLEXUS_TOKEN", raising=False)

    async def run() -> None:
        with pytest.raises(plexus.PermissionDenied):
            await plexus.aio.connect(tcp_bus(token_broker), reconnect=False)
        client = await plexus.aio.connect(tcp_bus(token_broker), reconnect=False, token=TOKEN.encode())
        try:
            assert (await client.ping())["pong"] is True
        finally:
            await client.close()

    asyncio.run(run())


def test_a_unix_client_sends_no_token(token_broker: Broker) -> None:
    client = plexus.connect(token_broker.bus, reconnect=False, token="anything, not checked")
    try:
        assert client.ping()["pong"] is True
    finally:
        client.close()
