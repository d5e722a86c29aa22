"""Finding the bus address and opening a socket (blocking or asyncio) to the broker."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Union

from .errors import NoBroker, TransportError

ENV_BUS = "PLEXUS_BUS"
ENV_BROKER_UID = "PLEXUS_BROKER_UID"
ENV_TOKEN = "PLEXUS_TOKEN"


class UntrustedBroker(TransportError):
    """The broker runs as a user this client does not trust; nothing was sent to it."""

    name = "untrusted_broker"


@dataclass(frozen=True)
class Address:
    """Where the broker listens: a Unix socket path, or a TCP host and port."""

    path: Optional[str] = None
    host: str = ""
    port: int = 0
    token: bytes = field(default=b"", repr=False, compare=False)
    """The token sent in `hello` to a broker on TCP (its `--token-file`); never on a Unix socket."""

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


def with_token(address: Address, token: Optional[Union[str, bytes]]) -> Address:
    """`address` carrying `token` (default `$PLEXUS_TOKEN`) when it is a TCP address."""
    if token is None:
        token = os.environ.get(ENV_TOKEN)
    if not token or address.path is not None:
        return address
    secret = token.encode() if isinstance(token, str) else token
    return replace(address, token=secret.strip())


def _no_broker(address: Address, exc: OSError) -> NoBroker:
    return NoBroker(f"no broker at {address} — start one with `plexus broker` ({exc.strerror or exc})")


def expected_broker_uid() -> Optional[int]:
    """The user the broker must run as, from `PLEXUS_BROKER_UID` (unset or empty: none)."""
    text = os.environ.get(ENV_BROKER_UID, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{ENV_BROKER_UID} is {text!r}, not a numeric user id") from None


def broker_trusted(broker_uid: int, own_uid: int, expected: Optional[int]) -> bool:
    """Whether a client running as `own_uid` talks to a broker running as `broker_uid`: the one
    user it was told to expect, else its own user or root (whom it cannot keep out anyway)."""
    if expected is not None:
        return broker_uid == expected
    return broker_uid in (own_uid, 0)


def untrusted_message(address: Address, broker_uid: int, own_uid: int, expected: Optional[int]) -> str:
    """Why the broker is not trusted, naming both users and what to do."""
    if expected is not None:
        return (
            f"the broker at {address} runs as uid {broker_uid}, not uid {expected} as "
            f"{ENV_BROKER_UID} requires; nothing was sent to it"
        )
    return (
        f"the broker at {address} runs as uid {broker_uid}, neither this client's user (uid {own_uid}) "
        f"nor root; nothing was sent to it. If it is the broker to use, set {ENV_BROKER_UID}={broker_uid}"
    )


def check_broker_user(sock: Any, address: Address) -> None:
    """Raises `UntrustedBroker` unless the peer of the Unix socket `sock` runs as a trusted user.

    Reads the peer's credentials (SO_PEERCRED: pid, uid, gid as three ints); where the platform
    has no SO_PEERCRED, the check is skipped.
    """
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return
    expected = expected_broker_uid()
    creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, broker_uid, _gid = struct.unpack("3i", creds)
    own_uid = os.geteuid()
    if not broker_trusted(broker_uid, own_uid, expected):
        raise UntrustedBroker(untrusted_message(address, broker_uid, own_uid, expected))


def open_socket(address: Address, timeout: float) -> socket.socket:
    """A connected blocking socket to the broker; raises `NoBroker` if nobody listens and
    `UntrustedBroker` if a user it does not trust does."""
    try:
        if address.path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(address.path)
                check_broker_user(sock, address)
            except BaseException:
                sock.close()
                raise
            return sock
        sock = socket.create_connection((address.host, address.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    except UntrustedBroker:
        raise
    except OSError as exc:
        raise _no_broker(address, exc) from exc


async def open_stream(address: Address, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An asyncio stream pair to the broker; raises `NoBroker` if nobody listens and
    `UntrustedBroker` if a user it does not trust does."""
    try:
        if address.path is None:
            return await asyncio.wait_for(asyncio.open_connection(address.host, address.port), timeout)
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(address.path), timeout)
        try:
            check_broker_user(writer.get_extra_info("socket"), address)
        except BaseException:
            writer.close()
            raise
        return reader, writer
    except asyncio.TimeoutError as exc:
        raise NoBroker(f"no broker at {address} — connecting timed out after {timeout} s") from exc
    except UntrustedBroker:
        raise
    except OSError as exc:
        raise _no_broker(address, exc) from exc
