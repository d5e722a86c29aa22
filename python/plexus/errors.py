"""Exceptions: one class per protocol error code, plus transport failures."""

from __future__ import annotations

from typing import Any


class Error(Exception):
    """Base of every plexus exception: a protocol error `code`, a `message` and optional `data`."""

    code: int = 0
    name: str = "error"

    def __init__(self, message: str = "", data: Any = None, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        if self.data is None:
            return self.message
        return f"{self.message} ({self.data!r})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, message={self.message!r}, data={self.data!r})"


class NoSuchObject(Error):
    """Nobody owns the called object name."""

    code = 1
    name = "no_such_object"


class NoSuchMethod(Error):
    """The object has no such method."""

    code = 2
    name = "no_such_method"


class Timeout(Error):
    """No answer came before the deadline (a call, `wait_for`, or a local wait)."""

    code = 3
    name = "timeout"


class WorkerGone(Error):
    """The object's owner disconnected while the call was pending."""

    code = 4
    name = "worker_gone"


class NameTaken(Error):
    """The name is registered by another connection (or exclusively)."""

    code = 5
    name = "name_taken"


class FrameTooLarge(Error):
    """A frame is over the size limit."""

    code = 6
    name = "frame_too_large"


class BadFrame(Error):
    """Malformed bytes, or a frame kind not valid at this point."""

    code = 7
    name = "bad_frame"


class UnsupportedVersion(Error):
    """The peer speaks another protocol major version."""

    code = 8
    name = "unsupported_version"


class PermissionDenied(Error):
    """The operation is not allowed, e.g. registering the name `plexus`."""

    code = 9
    name = "permission_denied"


class InvalidParams(Error):
    """Bad name, topic, pattern or params."""

    code = 10
    name = "invalid_params"


class Overloaded(Error):
    """A queue on the way is full; try again later."""

    code = 11
    name = "overloaded"


class Internal(Error):
    """A bug or crash in the answering party."""

    code = 12
    name = "internal"


class ShuttingDown(Error):
    """The broker is stopping."""

    code = 13
    name = "shutting_down"


class InvalidResult(Error):
    """The worker's result does not match its method's contract (said by the broker)."""

    code = 14
    name = "invalid_result"


# Cluster.
class Unavailable(Error):
    """The broker cannot reach what the request needs (its cluster's NATS); try again later."""

    code = 15
    name = "unavailable"


class TransportError(Error, ConnectionError):
    """The connection to the broker could not be made or was lost (no protocol code)."""

    name = "transport"


class NoBroker(TransportError):
    """No broker listens at the bus address."""

    name = "no_broker"


class ConnectionLost(TransportError):
    """The connection to the broker closed, or the client was closed.

    A request open when it closed may or may not have been carried out.
    """

    name = "connection_lost"


class NotConnected(TransportError):
    """The client is reconnecting to the broker: nothing was sent, so trying again later is safe."""

    name = "not_connected"


_BY_CODE: dict[int, type[Error]] = {
    cls.code: cls
    for cls in (
        NoSuchObject,
        NoSuchMethod,
        Timeout,
        WorkerGone,
        NameTaken,
        FrameTooLarge,
        BadFrame,
        UnsupportedVersion,
        PermissionDenied,
        InvalidParams,
        Overloaded,
        Internal,
        ShuttingDown,
        InvalidResult,
        # Cluster.
        Unavailable,
    )
}


def error_for(code: int, message: str, data: Any = None) -> Error:
    """The exception for an `error` frame: its code's class, or `Error` for an unknown code."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return Error(message, data, code=code)
    return cls(message, data)
