"""plexus: a Python client for the plexus message bus (calls, workers and events)."""

from __future__ import annotations

from . import aio
from ._names import validate_name, validate_pattern, validate_topic
from ._transport import default_socket
from ._requests import DEFAULT_TIMEOUT
from .client import Client, connect
from .context import CallContext
from .errors import (
    BadFrame,
    ConnectionLost,
    Error,
    FrameTooLarge,
    Internal,
    InvalidParams,
    InvalidResult,
    NameTaken,
    NoBroker,
    NoSuchMethod,
    NoSuchObject,
    NotConnected,
    Overloaded,
    PermissionDenied,
    ShuttingDown,
    Timeout,
    TransportError,
    Unavailable,
    UnsupportedVersion,
    WorkerGone,
)
from .events import Event, Subscription

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TIMEOUT",
    "BadFrame",
    "CallContext",
    "Client",
    "ConnectionLost",
    "Error",
    "Event",
    "FrameTooLarge",
    "Internal",
    "InvalidParams",
    "InvalidResult",
    "NameTaken",
    "NoBroker",
    "NoSuchMethod",
    "NoSuchObject",
    "NotConnected",
    "Overloaded",
    "PermissionDenied",
    "ShuttingDown",
    "Subscription",
    "Timeout",
    "TransportError",
    "Unavailable",
    "UnsupportedVersion",
    "WorkerGone",
    "aio",
    "connect",
    "default_socket",
    "validate_name",
    "validate_pattern",
    "validate_topic",
]
