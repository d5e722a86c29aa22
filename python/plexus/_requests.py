"""Requests to the broker: timeouts, client names, and request frames built from checked arguments."""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, Iterable, List, Optional, Union

from ._codec import FLAG_ACK, FLAG_QUEUE, FLAG_SHARED, Frame, Kind
from ._dispatch import dumps
from ._names import validate_name, validate_pattern, validate_topic

DEFAULT_TIMEOUT = 30.0
"""Seconds a call waits for its answer unless told otherwise."""
CONNECT_TIMEOUT = 10.0
"""Seconds to connect and get the broker's `welcome`."""
REQUEST_TIMEOUT = 30.0
"""Seconds to wait for the broker's answer to register, unregister, subscribe and acked publish."""
GRACE = 1.0
"""Seconds a caller waits past a call's timeout for the broker's own `timeout` answer."""
BROKER_OBJECT = "plexus"
"""The object the broker itself serves."""


def default_client_name() -> str:
    """`python:<program name>`, the name a client gives the broker unless told otherwise."""
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return f"python:{program or 'python'}"


def timeout_ms(timeout: Optional[float]) -> int:
    """A timeout in seconds as the protocol's milliseconds (0 = the broker's default)."""
    if timeout is None:
        return 0
    if timeout < 0:
        raise ValueError(f"a timeout cannot be negative: {timeout}")
    return max(1, min(round(timeout * 1000), 0xFFFFFFFF))


def local_wait(timeout: Optional[float]) -> Optional[float]:
    """How long a caller waits for a call's answer before giving up on its own."""
    return None if timeout is None else timeout + GRACE


def hello_frame(name: str, token: bytes = b"") -> Frame:
    """The `hello` that opens a session, with the broker's token as its payload when it asks for one."""
    return Frame(Kind.HELLO, strings=(name,), payload=token)


def call_frame(rid: int, obj: str, method: str, params: Any, timeout: Optional[float]) -> Frame:
    """A `call` of `obj.method(params)` with a timeout in seconds (`None`: the broker's default)."""
    validate_name(obj)
    payload = b"" if params is None else dumps(params)
    return Frame(Kind.CALL, rid, timeout_ms(timeout), strings=(obj, method), payload=payload)


def publish_frame(rid: int, topic: str, payload: Any, ack: bool) -> Frame:
    """A `publish` of `payload` as JSON on `topic` (`rid` 0 without `ack`)."""
    validate_topic(topic)
    return Frame(Kind.PUBLISH, rid, flags=FLAG_ACK if ack else 0, strings=(topic,), payload=dumps(payload))


def subscribe_frame(rid: int, pattern: str, queue: Optional[str] = None) -> Frame:
    """A `subscribe` to `pattern` as subscription `rid`, a member of queue group `queue` if given."""
    validate_pattern(pattern)
    if queue is None:
        return Frame(Kind.SUBSCRIBE, rid, strings=(pattern,))
    validate_name(queue)
    return Frame(Kind.SUBSCRIBE, rid, flags=FLAG_QUEUE, strings=(pattern, queue))


def register_frame(
    rid: int, name: str, shared: bool, methods: Iterable[str] = (), description: Optional[Dict[str, Any]] = None
) -> Frame:
    """A `register` of `name`, alone or as a member of its queue group, declaring `methods`
    (shown by `plexus introspect`), or the whole `description` when it has a contract."""
    validate_name(name)
    declared = sorted(methods)
    if description is not None:
        payload = dumps(description)
    else:
        payload = dumps({"methods": {m: {} for m in declared}}) if declared else b""
    return Frame(Kind.REGISTER, rid, flags=FLAG_SHARED if shared else 0, strings=(name,), payload=payload)


def unregister_frame(rid: int, name: str) -> Frame:
    """An `unregister` of `name`."""
    return Frame(Kind.UNREGISTER, rid, strings=(name,))


def wait_for_params(names: Union[str, Iterable[str]], timeout: float) -> Dict[str, Any]:
    """Params of `plexus.wait_for` for one name or several."""
    wanted: List[str] = [names] if isinstance(names, str) else [str(n) for n in names]
    return {"names": wanted, "timeout_ms": timeout_ms(timeout)}
