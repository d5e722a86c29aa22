"""One connection's protocol state, without I/O: it turns API requests into bytes and broker frames into outcomes."""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Generic, List, NamedTuple, Optional, Tuple, TypeVar, Union

from ._codec import DEFAULT_MAX_FRAME, Frame, Kind, encode
from ._dispatch import Methods, error_frame, error_from_frame, loads, methods_of, prepare, reply_frame
from ._names import validate_name
from ._requests import (
    REQUEST_TIMEOUT,
    call_frame,
    hello_frame,
    local_wait,
    publish_frame,
    register_frame,
    subscribe_frame,
    unregister_frame,
)
from ._transport import Address
from .errors import BadFrame, ConnectionLost, FrameTooLarge, Internal, NameTaken, NoSuchObject, Timeout
from .events import Event

log = logging.getLogger("plexus")

W = TypeVar("W")
"""What a driver waits on for the answer to one request (a slot for a thread, a future for a coroutine)."""
S = TypeVar("S")
"""A driver's subscription object."""


def hello(name: str) -> bytes:
    """The bytes of the `hello` that opens a connection as client `name`."""
    return encode(hello_frame(name))


class Welcome(NamedTuple):
    """What the broker's `welcome` tells: the connection's id, the broker's frame limit and version."""

    conn_id: int
    max_frame: int
    broker_version: str


def check_welcome(frame: Optional[Frame], address: Address) -> Welcome:
    """What the broker's first frame tells if it is a `welcome`; raises what it stands for otherwise."""
    if frame is None:
        raise ConnectionLost(f"the broker at {address} closed the connection during the handshake")
    if frame.kind == Kind.ERROR:
        raise error_from_frame(frame)
    if frame.kind != Kind.WELCOME:
        raise BadFrame(f"expected welcome from {address}, got {frame.kind.name.lower()}")
    return Welcome(frame.id, frame.aux or DEFAULT_MAX_FRAME, frame.string(0))


@dataclass(frozen=True)
class Request(Generic[W]):
    """A started request: the bytes to send, the waiter its answer completes and how long to wait."""

    id: int
    data: bytes
    waiter: W
    wait: Optional[float]
    """Seconds the caller waits for the answer before giving up (`None`: no limit)."""
    what: str
    """What the request does, for the `Timeout` message."""
    cancel: Optional[bytes] = None
    """For a call, the `cancel` to send when the caller gives up."""
    claim: str = ""
    """The object name this request registers for the first time (withdrawn if the request fails)."""

    def timed_out(self) -> Timeout:
        """The error for a caller that waited `wait` seconds without an answer."""
        return Timeout(f"no answer to {self.what} within {self.wait} s")


@dataclass(frozen=True)
class Answer(Generic[W]):
    """Complete the request `waiter` waits for: with `error` if it is set, else with `result`."""

    waiter: W
    result: Any = None
    error: Optional[BaseException] = None


@dataclass(frozen=True)
class Deliver(Generic[S]):
    """Hand `event` to `subscription`."""

    subscription: S
    event: Event


@dataclass(frozen=True)
class End(Generic[S]):
    """End `subscription`: its request failed, or the connection is over."""

    subscription: S


@dataclass(frozen=True)
class Serve:
    """Run `fn(*args, **kwargs)` for incoming call `id`, then give its result or exception to `Session.answered`."""

    id: int
    fn: Callable[..., Any]
    args: Tuple[Any, ...]
    kwargs: Dict[str, Any]


@dataclass(frozen=True)
class Send:
    """Write `data` (an answer to an incoming call that needs no handler, such as `no_such_object`)."""

    data: bytes


Outcome = Union[Answer[W], Deliver[S], End[S], Serve, Send]
"""What a driver does because of a frame from the broker, a finished request or the end of the connection."""


@dataclass
class _Served:
    """An object this client serves: its method table and whether it joined the name's queue group."""

    methods: Methods
    shared: bool


class Session(Generic[W, S]):
    """The state of one connection to the broker, shared by the blocking and the asyncio client.

    It allocates request ids and keeps the requests in flight, the subscriptions, the served
    objects and the incoming calls being served. The API methods return a `Request` (or bytes)
    for the driver to send; `receive`, `settle` and `connection_lost` return the outcomes the
    driver carries out. It never reads, writes or waits, and it is safe to use from several threads.
    `new_waiter` makes the object a request's answer is handed to.
    """

    def __init__(self, address: Address, max_frame: int, new_waiter: Callable[[], W]) -> None:
        self._address = address
        self._max_frame = max_frame
        self._new_waiter = new_waiter
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: Dict[int, Tuple[Optional[W], str]] = {}
        self._subs: Dict[int, Tuple[str, S]] = {}
        self._objects: Dict[str, _Served] = {}
        self._serving: Dict[int, bool] = {}
        self._closing = False
        self._closed = False
        self._reason = ""

    # Requests -----------------------------------------------------------------------------

    def call(self, obj: str, method: str, params: Any, timeout: Optional[float]) -> Request[W]:
        """A call of `obj.method(params)`; the answer's result is the decoded JSON."""
        frame = call_frame(0, obj, method, params, timeout)
        with self._lock:
            return self._start(frame, local_wait(timeout), f"{obj}.{method}", cancellable=True)

    def publish(self, topic: str, payload: Any) -> bytes:
        """A `publish` that is not acknowledged: bytes to write, nothing to wait for."""
        return self._encode(publish_frame(0, topic, payload, False))

    def publish_acked(self, topic: str, payload: Any) -> Request[W]:
        """A `publish` answered with the counts `{"delivered": N, "dropped": M}`."""
        frame = publish_frame(0, topic, payload, True)
        with self._lock:
            return self._start(frame, REQUEST_TIMEOUT, f"publish on {topic}")

    def subscribe(self, pattern: str, make: Callable[[int], S]) -> Tuple[Request[W], S]:
        """A `subscribe` to `pattern`, and the subscription `make(id)` returns, which gets its events."""
        frame = subscribe_frame(0, pattern)
        with self._lock:
            request = self._start(frame, REQUEST_TIMEOUT, f"subscribe {pattern}")
            sub = make(request.id)
            self._subs[request.id] = (pattern, sub)
        return request, sub

    def unsubscribe(self, sub_id: int) -> bytes:
        """Forgets subscription `sub_id`; the `unsubscribe` to write (it has no answer)."""
        with self._lock:
            self._subs.pop(sub_id, None)
        return self._encode(Frame(Kind.UNSUBSCRIBE, sub_id))

    def serve(self, name: str, target: Any, shared: bool) -> Request[W]:
        """Installs `target`'s methods as object `name` and registers it; raises `NameTaken` if it is served already."""
        validate_name(name)
        methods = methods_of(target)
        frame = register_frame(0, name, shared, methods)
        with self._lock:
            if name in self._objects:
                raise NameTaken(f"this client already serves {name!r}")
            request = self._start(frame, REQUEST_TIMEOUT, f"register {name}", claim=name)
            self._objects[name] = _Served(methods, shared)
        return request

    def add_method(self, obj: str, method: str, fn: Callable[..., Any], shared: bool) -> Request[W]:
        """Installs `fn` as `obj.method`: registers `obj` if it is new, else declares its methods again."""
        with self._lock:
            served = self._objects.get(obj)
            if served is not None:
                served.methods[method] = fn
                frame = register_frame(0, obj, shared, list(served.methods))
                return self._start(frame, REQUEST_TIMEOUT, f"declare {obj}.{method}")
            frame = register_frame(0, obj, shared, [method])
            request = self._start(frame, REQUEST_TIMEOUT, f"register {obj}", claim=obj)
            self._objects[obj] = _Served({method: fn}, shared)
        return request

    def unserve(self, name: str) -> Request[W]:
        """Uninstalls object `name` and unregisters it."""
        with self._lock:
            self._objects.pop(name, None)
            return self._start(unregister_frame(0, name), REQUEST_TIMEOUT, f"unregister {name}")

    def replay(self) -> List[bytes]:
        """After a reconnect: a `register` of every served object and a `subscribe` of every subscription.

        Their answers are not waited for; a failure is logged.
        """
        with self._lock:
            data = []
            for name, served in self._objects.items():
                rid = next(self._ids)
                self._pending[rid] = (None, f"registering {name!r} again")
                data.append(self._encode(register_frame(rid, name, served.shared, list(served.methods))))
            for sub_id, (pattern, _) in self._subs.items():
                self._pending[sub_id] = (None, f"subscribing to {pattern!r} again")
                data.append(self._encode(subscribe_frame(sub_id, pattern)))
        return data

    def settle(self, request: Request[W], ok: bool) -> List[Outcome[W, S]]:
        """Forgets `request`, whose caller stopped waiting; if it failed, undoes what it set up.

        A failed request uninstalls the object name it claimed and ends the subscription it opened.
        """
        with self._lock:
            self._pending.pop(request.id, None)
            if ok:
                return []
            if request.claim:
                self._objects.pop(request.claim, None)
            entry = self._subs.pop(request.id, None)  # a subscribe's id is its subscription's
        return [] if entry is None else [End(entry[1])]

    # Served calls -------------------------------------------------------------------------

    def answered(self, call_id: int, result: Any = None, error: Optional[BaseException] = None) -> Optional[bytes]:
        """The bytes answering incoming call `call_id`, whose handler returned `result` or raised `error`.

        `None` if the call was cancelled meanwhile. An answer over the size limit becomes `internal`.
        """
        with self._lock:
            cancelled = self._serving.pop(call_id, False)
        if cancelled:
            return None
        return self._answer(error_frame(call_id, error) if error is not None else reply_frame(call_id, result))

    # Incoming frames and the end ----------------------------------------------------------

    def receive(self, frame: Frame) -> List[Outcome[W, S]]:
        """What to do about `frame` from the broker."""
        kind = frame.kind
        if kind in (Kind.REPLY, Kind.ERROR, Kind.PONG):
            return self._on_answer(frame)
        if kind == Kind.EVENT:
            with self._lock:
                entry = self._subs.get(frame.id)
            return [] if entry is None else [Deliver(entry[1], Event(frame.string(0), frame.payload, frame.aux))]
        if kind == Kind.CALL:
            return [self._on_call(frame)]
        if kind == Kind.CANCEL:
            # A handler cannot be stopped midway; its answer is dropped instead (see `answered`).
            with self._lock:
                if frame.id in self._serving:
                    self._serving[frame.id] = True
            return []
        log.warning("ignoring an unexpected %s frame from the broker", kind.name.lower())
        return []

    @property
    def closed(self) -> bool:
        """Whether the connection has ended or is being closed."""
        return self._closed

    def close(self) -> None:
        """The user closes the connection: no request starts from now on."""
        with self._lock:
            self._closing = True
            self._closed = True

    def check_open(self) -> None:
        """Raises `ConnectionLost` once the connection is closed."""
        if self._closed:
            raise ConnectionLost(self._reason or "the client is closed")

    def connection_lost(self, error: Optional[BaseException]) -> List[Outcome[W, S]]:
        """Ends the session after `error`, or a clean end of stream (`None`).

        Every request in flight fails with `ConnectionLost` and every subscription ends.
        """
        if error is None:
            reason = f"the broker at {self._address} closed the connection"
        else:
            reason = f"the connection to the broker at {self._address} failed: {error}"
        with self._lock:
            closing = self._closing
            self._closed = True
            self._reason = "the client was closed" if closing else reason
            waiters = [waiter for waiter, _ in self._pending.values() if waiter is not None]
            subs = [sub for _, sub in self._subs.values()]
            self._pending.clear()
            self._subs.clear()
        if not closing:
            log.warning("%s", reason)
        outcomes: List[Outcome[W, S]] = [Answer(waiter, error=ConnectionLost(self._reason)) for waiter in waiters]
        outcomes.extend(End(sub) for sub in subs)
        return outcomes

    # Internals ----------------------------------------------------------------------------

    def _start(
        self, frame: Frame, wait: Optional[float], what: str, *, cancellable: bool = False, claim: str = ""
    ) -> Request[W]:
        """Gives `frame` a fresh id and a waiter for its answer; the caller holds the lock."""
        self.check_open()
        rid = next(self._ids)
        data = self._encode(replace(frame, id=rid))
        waiter = self._new_waiter()
        self._pending[rid] = (waiter, what)
        cancel = encode(Frame(Kind.CANCEL, rid)) if cancellable else None
        return Request(rid, data, waiter, wait, what, cancel, claim)

    def _encode(self, frame: Frame) -> bytes:
        """The bytes of `frame`; raises `FrameTooLarge` over the broker's limit."""
        data = encode(frame)
        if len(data) > self._max_frame:
            raise FrameTooLarge(f"frame of {len(data)} bytes exceeds the broker's limit of {self._max_frame} bytes")
        return data

    def _answer(self, frame: Frame) -> bytes:
        """The bytes of an answer to an incoming call, or of an `internal` error if it is too large."""
        try:
            return self._encode(frame)
        except FrameTooLarge as exc:
            return self._encode(error_frame(frame.id, Internal(f"the answer is too large: {exc}")))

    def _on_answer(self, frame: Frame) -> List[Outcome[W, S]]:
        with self._lock:
            entry = self._pending.pop(frame.id, None)
        if entry is None:
            if frame.kind == Kind.ERROR and frame.id == 0:
                log.warning("the broker reported an error: %s", error_from_frame(frame))
            return []
        waiter, what = entry
        result: Any = None
        error: Optional[BaseException] = None
        if frame.kind == Kind.ERROR:
            error = error_from_frame(frame)
        else:
            try:
                result = loads(frame.payload)
            except ValueError as exc:
                error = exc
        if waiter is None:
            if error is not None:
                log.warning("%s failed: %s", what, error)
            return []
        return [Answer(waiter, result, error)]

    def _on_call(self, frame: Frame) -> Union[Serve, Send]:
        obj = frame.string(0)
        with self._lock:
            served = self._objects.get(obj)
        if served is None:
            return Send(self._answer(error_frame(frame.id, NoSuchObject(f"this connection does not serve '{obj}'"))))
        try:
            fn, (args, kwargs) = prepare(served.methods, frame)
        except Exception as exc:
            return Send(self._answer(error_frame(frame.id, exc)))
        with self._lock:
            self._serving[frame.id] = False
        return Serve(frame.id, fn, args, kwargs)
