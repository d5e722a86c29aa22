"""Whom the client talks to: on a Unix socket it checks the broker's user (SO_PEERCRED) before it
sends anything, against its own user and root, or exactly `PLEXUS_BROKER_UID`."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import threading
from pathlib import Path
from typing import List

import pytest

import plexus
import plexus.aio
from plexus._transport import Address, UntrustedBroker, broker_trusted, untrusted_message
from conftest import Broker

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_PEERCRED"), reason="needs SO_PEERCRED (Linux)")

WAIT = 10.0
OTHER_UID = 4242


def test_trusted_users() -> None:
    assert broker_trusted(1000, 1000, None), "our own user"
    assert broker_trusted(0, 1000, None), "root"
    assert not broker_trusted(1001, 1000, None), "another user"
    assert broker_trusted(1001, 1000, 1001), "the expected user"
    assert not broker_trusted(1000, 1000, 1001), "only the expected user"
    assert not broker_trusted(0, 1000, 1001), "not even root"


def test_the_message_names_both_users_and_what_to_set() -> None:
    text = untrusted_message(Address(path="/run/bus.sock"), 1001, 1000, None)
    assert "uid 1001" in text and "uid 1000" in text and "PLEXUS_BROKER_UID=1001" in text
    text = untrusted_message(Address(path="/run/bus.sock"), 0, 1000, 1001)
    assert "uid 0" in text and "uid 1001" in text


def test_our_own_broker_is_trusted(broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    with plexus.connect(broker.bus, name="unset") as bus:
        assert bus.ping()["pong"] is True
    monkeypatch.setenv("PLEXUS_BROKER_UID", str(os.geteuid()))
    with plexus.connect(broker.bus, name="expected") as bus:
        assert bus.ping()["pong"] is True


def test_a_broker_not_running_as_plexus_broker_uid_is_refused(broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXUS_BROKER_UID", str(OTHER_UID))
    with pytest.raises(UntrustedBroker) as refused:
        plexus.connect(broker.bus, name="refused")
    text = str(refused.value)
    assert f"uid {os.geteuid()}" in text and f"uid {OTHER_UID}" in text
    assert isinstance(refused.value, plexus.errors.TransportError)


def test_the_asyncio_client_refuses_it_too(broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXUS_BROKER_UID", str(OTHER_UID))
    with pytest.raises(UntrustedBroker, match=f"uid {OTHER_UID}"):
        asyncio.run(plexus.aio.connect(broker.bus, name="refused"))


def test_nothing_is_sent_to_an_untrusted_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXUS_BROKER_UID", str(OTHER_UID))
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bus.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(WAIT)
        received: List[bytes] = []

        def serve() -> None:
            conn, _ = listener.accept()
            conn.settimeout(WAIT)
            with conn:
                while chunk := conn.recv(4096):
                    received.append(chunk)

        server = threading.Thread(target=serve)
        server.start()
        with pytest.raises(UntrustedBroker):
            plexus.connect(f"unix:{path}", name="refused")
        server.join(WAIT)
        listener.close()
        assert not server.is_alive()
        assert received == []


def test_a_plexus_broker_uid_that_is_not_a_number_is_an_error(broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXUS_BROKER_UID", "nobody")
    with pytest.raises(ValueError, match="PLEXUS_BROKER_UID"):
        plexus.connect(broker.bus, name="bad")
