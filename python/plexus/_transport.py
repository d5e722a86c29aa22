"""Finding the bus address and opening a socket (blocking or asyncio) to the broker."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from typing import Optional

from .errors import NoBroker

ENV_BUS = "PLEXUS_BUS"


@dataclass(frozen=True)
class Address:
    """Where the broker listens: a Unix socket path, or a TCP host and port."""

    path: Optional[str] = None
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def default_socket() -> str:
    """`$XDG_RUNTIME_DIR/plexus/bus.sock`, or `/tmp/plexus-$UID/bus.sock` without XDG_RUNTIME_DIR."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "plexus", "bus.sock")
    return f"/tmp/plexus-{os.getuid()}/bus.sock"


def parse_address(text: str) -> Address:
    """Parses `unix:/path`, `unix:///path`, `tcp://host:port` or a bare path."""
    if text.startswith("tcp://"):
        rest = text[len("tcp://") :]
        host, sep, port = rest.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"bad bus address {text!r}: expected tcp://host:port")
        return Address(host=host.strip("[]"), port=int(port))
    if text.startswith("unix://"):
        path = text[len("unix://") :]
    elif text.startswith("unix:"):
        path = text[len("unix:") :]
    else:
        path = text
    if not path or ("://" in text and not text.startswith("unix://")):
        raise ValueError(f"bad bus address {text!r}: expected unix:/path, tcp://host:port or a path")
    return Address(path=path)


def resolve_address(bus: Optional[str] = None) -> Address:
    """The bus address: `bus` if given, else `$PLEXUS_BUS`, else the default socket."""
    if bus:
        return parse_address(bus)
    env = os.environ.get(ENV_BUS)
    if env:
        return parse_address(env)
    return Address(path=default_socket())


def _no_broker(address: Address, exc: OSError) -> NoBroker:
    return NoBroker(f"no broker at {address} — start one with `plexus broker` ({exc.strerror or exc})")


def open_socket(address: Address, timeout: float) -> socket.socket:
    """A connected blocking socket to the broker; raises `NoBroker` if nobody listens."""
    try:
        if address.path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(address.path)
            except BaseException:
                sock.close()
                raise
            return sock
        sock = socket.create_connection((address.host, address.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    except OSError as exc:
        raise _no_broker(address, exc) from exc


async def open_stream(address: Address, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An asyncio stream pair to the broker; raises `NoBroker` if nobody listens."""
    try:
        if address.path is not None:
            opening = asyncio.open_unix_connection(address.path)
        else:
            opening = asyncio.open_connection(address.host, address.port)
        return await asyncio.wait_for(opening, timeout)
    except asyncio.TimeoutError as exc:
        raise NoBroker(f"no broker at {address} — connecting timed out after {timeout} s") from exc
    except OSError as exc:
        raise _no_broker(address, exc) from exc
