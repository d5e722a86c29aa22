"""One connection's protocol state, without I/O: it turns API requests into bytes and broker frames into outcomes."""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Generic, List, NamedTuple, Optional, Tuple, TypeVar, Union

from . import _contracts
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
from .context import CallContext
from .errors import BadFrame, ConnectionLost, FrameTooLarge, Internal, NameTaken, NoSuchObject, NotConnected, Timeout
from .events import Event

log = logging.getLogger("plexus")

W = TypeVar("W")
"""What a driver waits on for the answer to one request (a slot for a thread, a future for a coroutine)."""
S = TypeVar("S")
"""A driver's subscription object."""


def hello(name: str, token: bytes = b"") -> bytes:
    """The bytes of the `hello` that opens a connection as client `name`, presenting `token`."""
    return encode(hello_frame(name, token))


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
    epoch: int
    """The connection it belongs to: its bytes are sent on that connection or not at all."""
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
    """End `subscription`: its request failed, or the client is done; with `error` if it ended by failure."""

    subscription: S
    error: Optional[ConnectionLost] = None


@dataclass(frozen=True)
class Serve:
    """Run `fn(*args, **kwargs)` for incoming call `id`, then give its result or exception to `Session.answered`."""

    id: int
    fn: Callable[..., Any]
    args: Tuple[Any, ...]
    kwargs: Dict[str, Any]
    context: CallContext
    """The call's context (also in `kwargs` if `fn` asked for it); cancelled when the caller gives up."""
    epoch: int
    """The connection the call came on: its answer goes back on that connection or nowhere."""


@dataclass(frozen=True)
class Abandon:
    """The caller of the incoming call with `context` gave up, or the connection is gone: stop its handler."""

    context: CallContext


@dataclass(frozen=True)
class Send:
    """Write `data` on connection `epoch` (an answer that needs no handler, such as `no_such_object`)."""

    data: bytes
    epoch: int


Outcome = Union[Answer[W], Deliver[S], End[S], Serve, Abandon, Send]
"""What a driver does because of a frame from the broker, a finished request or the end of the connection."""


@dataclass(frozen=True)
class _Pending(Generic[W]):
    """A request waiting for its answer: who waits (`None`: nobody, log a failure), what it does, the name it claims."""

    waiter: Optional[W]
    what: str
    claim: str = ""


@dataclass
class _Served:
    """An object this client serves: its method table and whether it joined the name's queue group."""

    methods: Methods
    shared: bool
    entries: Dict[str, _contracts.Entry] = field(default_factory=dict)
    """Contracts: what each method declares (schemas, description, deprecated)."""
    topics: Dict[str, Any] = field(default_factory=dict)
    """Contracts: the payload schema of each topic the object declares."""

    def register(self, rid: int, name: str) -> Frame:
        """The `register` of this object as `name`, with its contract if it has one."""
        description = None
        if self.entries or self.topics:
            description = _contracts.description(self.methods, self.entries, self.topics)
        return register_frame(rid, name, self.shared, list(self.methods), description)



class Session(Generic[W, S]):
    """The protocol state of one client across its connections to the broker, shared by both drivers.

    It allocates request ids and keeps the requests in flight, the subscriptions, the served
    objects and the incoming calls being served. The API methods return a `Request` (or bytes)
    for the driver to send; `receive`, `settle`, `connection_lost`, `give_up` and `close` return
    the outcomes the driver carries out. After `connection_lost` with `reconnect` the session is
    disconnected (requests raise `NotConnected`) until `reconnected`, which keeps the served
    objects and subscriptions. Each connection is an epoch: bytes made for one are never sent on
    another. It never reads, writes or waits, and it is safe to use from several threads.
    `new_waiter` makes the object a request's answer is handed to.
    """

    def __init__(self, address: Address, max_frame: int, new_waiter: Callable[[], W]) -> None:
        self._address = address
        self._max_frame = max_frame
        self._new_waiter = new_waiter
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: Dict[int, _Pending[W]] = {}
        self._subs: Dict[int, Tuple[Tuple[str, Optional[str]], S]] = {}
        self._objects: Dict[str, _Served] = {}
        self._serving: Dict[int, CallContext] = {}
        self._epoch = 1
        self._connected = True
        self._closing = False
        self._closed = False
        self._reason = ""
        """Why the session is disconnected or done."""
        self._failure: Optional[str] = None
        """Why the session is done, unless the user closed it."""

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

    def subscribe(
        self, pattern: str, make: Callable[[int], S], queue: Optional[str] = None
    ) -> Tuple[Request[W], S]:
        """A `subscribe` to `pattern` (in queue group `queue`, if given), and the subscription
        `make(id)` returns, which gets its events."""
        frame = subscribe_frame(0, pattern, queue)
        with self._lock:
            request = self._start(frame, REQUEST_TIMEOUT, f"subscribe {pattern}")
            sub = make(request.id)
            self._subs[request.id] = ((pattern, queue), sub)
        return request, sub

    def unsubscribe(self, sub_id: int) -> bytes:
        """Forgets subscription `sub_id`; the `unsubscribe` to write (it has no answer)."""
        with self._lock:
            self._subs.pop(sub_id, None)
        return self._encode(Frame(Kind.UNSUBSCRIBE, sub_id))

    def serve(
        self,
        name: str,
        target: Any,
        shared: bool,
        schemas: Optional[Dict[str, Any]] = None,
        topics: Optional[Dict[str, Any]] = None,
        typed: bool = False,
    ) -> Request[W]:
        """Installs `target`'s methods as object `name` and registers it, with the contract that
        `schemas` (method → params/result/description/deprecated), `topics` (topic → payload
        schema) and, with `typed`, the methods' type hints make; raises `NameTaken` if it is
        served already."""
        validate_name(name)
        methods = methods_of(target)
        entries: Dict[str, _contracts.Entry] = {}
        if typed:
            entries = {m: _contracts.schemas_from_hints(fn) for m, fn in methods.items()}
        for method, declared in (schemas or {}).items():
            if method not in methods:
                raise TypeError(f"schemas names {method!r}, which is not a method of the served object")
            entries[method] = {**entries.get(method, {}), **_contracts.checked_entry(method, declared)}
        served = _Served(methods, shared, entries, dict(topics or {}))
        frame = served.register(0, name)
        with self._lock:
            if name in self._objects:
                raise NameTaken(f"this client already serves {name!r}")
            request = self._start(frame, REQUEST_TIMEOUT, f"register {name}", claim=name)
            self._objects[name] = served
        return request

    def add_method(
        self, obj: str, method: str, fn: Callable[..., Any], shared: bool, entry: Optional[_contracts.Entry] = None
    ) -> Request[W]:
        """Installs `fn` as `obj.method` (declaring `entry`: its schemas, description, deprecation):
        registers `obj` if it is new, else declares its methods again."""
        with self._lock:
            served = self._objects.get(obj)
            if served is not None:
                grown = _Served({**served.methods, method: fn}, shared, dict(served.entries), served.topics)
                if entry:
                    grown.entries[method] = entry
                request = self._start(grown.register(0, obj), REQUEST_TIMEOUT, f"declare {obj}.{method}")
                served.methods[method] = fn
                if entry:
                    served.entries[method] = entry
                return request
            served = _Served({method: fn}, shared, {method: entry} if entry else {})
            request = self._start(served.register(0, obj), REQUEST_TIMEOUT, f"register {obj}", claim=obj)
            self._objects[obj] = served
        return request

    def unserve(self, name: str) -> Request[W]:
        """Uninstalls object `name` and unregisters it."""
        with self._lock:
            self._objects.pop(name, None)
            return self._start(unregister_frame(0, name), REQUEST_TIMEOUT, f"unregister {name}")

    def settle(self, request: Request[W], ok: bool) -> List[Outcome[W, S]]:
        """Forgets `request`, whose caller stopped waiting; if it failed, undoes what it set up.

        A failed request uninstalls the object name it claimed and ends the subscription it opened.
        """
        with self._lock:
            if request.epoch == self._epoch:
                self._pending.pop(request.id, None)
            if ok:
                return []
            if request.claim:
                self._objects.pop(request.claim, None)
            entry = self._subs.pop(request.id, None)  # a subscribe's id is its subscription's
        return [] if entry is None else [End(entry[1])]

    # Served calls -------------------------------------------------------------------------

    def answered(self, call: Serve, result: Any = None, error: Optional[BaseException] = None) -> Optional[bytes]:
        """The bytes answering incoming `call`, whose handler returned `result` or raised `error`.

        `None` if the call was cancelled or its connection lost meanwhile. An answer over the size
        limit becomes `internal`. Write the bytes on connection `call.epoch` only.
        """
        with self._lock:
            if self._serving.get(call.id) is not call.context:
                return None
            del self._serving[call.id]
        return self._answer(error_frame(call.id, error) if error is not None else reply_frame(call.id, result))

    # Incoming frames ----------------------------------------------------------------------

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
            with self._lock:
                context = self._serving.pop(frame.id, None)
            if context is None:
                return []
            context._cancel()
            return [Abandon(context)]
        log.warning("ignoring an unexpected %s frame from the broker", kind.name.lower())
        return []

    # The connection -----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the client is done: closed, or its connection lost for good."""
        return self._closed

    @property
    def failure(self) -> Optional[ConnectionLost]:
        """Why the client is done if that was not `close()`: the connection lost for good."""
        return None if self._failure is None else ConnectionLost(self._failure)

    def check_open(self, epoch: Optional[int] = None) -> None:
        """Raises unless bytes can be sent now (and, given `epoch`, on that connection).

        `ConnectionLost` once the client is done; `NotConnected` while it reconnects, or if the
        connection `epoch` is gone.
        """
        if self._closed:
            raise ConnectionLost(self._reason or "the client is closed")
        if not self._connected:
            raise NotConnected(
                f"not connected to the broker at {self._address} ({self._reason}); reconnecting, "
                "and nothing was sent: try again shortly"
            )
        if epoch is not None and epoch != self._epoch:
            raise NotConnected(f"the connection to the broker at {self._address} was lost before this was sent")

    def connection_lost(self, error: Optional[BaseException], *, reconnect: bool) -> List[Outcome[W, S]]:
        """The connection ended after `error`, or at a clean end of stream (`None`).

        Every request in flight fails with `ConnectionLost` and every running handler is told to
        stop. With `reconnect` (and unless the user closed the client) the served objects and
        subscriptions are kept for `reconnected`; without, the client is done and every
        subscription ends with the error.
        """
        if error is None:
            reason = f"the broker at {self._address} closed the connection"
        else:
            reason = f"the connection to the broker at {self._address} failed: {error}"
        with self._lock:
            closing = self._closing
            final = closing or not reconnect
            if closing:
                self._reason = "the client was closed"
            elif final:
                self._reason = self._failure = (
                    f"{reason}, and reconnect=False: this client is done; restart the program once the broker is back"
                )
            else:
                self._reason = reason
            self._epoch += 1
            self._connected = False
            self._closed = final
            pending, self._pending = self._pending, {}
            contexts = list(self._serving.values())
            self._serving.clear()
            ended = []
            for rid, request in pending.items():
                if request.claim:
                    self._objects.pop(request.claim, None)
                if request.waiter is not None and rid in self._subs:
                    ended.append(End(self._subs.pop(rid)[1]))
            if final:
                subs_error = None if closing else ConnectionLost(self._reason)
                ended.extend(End(sub, subs_error) for _, sub in self._subs.values())
                self._subs.clear()
        if not closing:
            if final:
                log.warning("%s", self._reason)
            else:
                log.warning("%s; reconnecting (requests fail with NotConnected until it is back)", reason)
        lost = ConnectionLost(
            "the client was closed"
            if closing
            else f"{reason} while the request was open; it may or may not have been carried out"
        )
        outcomes: List[Outcome[W, S]] = [Answer(p.waiter, error=lost) for p in pending.values() if p.waiter is not None]
        outcomes.extend(ended)
        outcomes.extend(self._abandon(contexts))
        return outcomes

    def reconnected(self, max_frame: int) -> List[bytes]:
        """A new connection is up: requests go out on it from now on. Returns the bytes to send on it
        first: a `register` of every served object and a `subscribe` of every subscription.

        Their answers are not waited for; a failure is logged. Raises `ConnectionLost` if the
        client was closed meanwhile.
        """
        with self._lock:
            if self._closed:
                raise ConnectionLost(self._reason or "the client is closed")
            self._max_frame = max_frame
            self._connected = True
            data = []
            for name, served in self._objects.items():
                rid = next(self._ids)
                self._pending[rid] = _Pending(None, f"registering {name!r} again")
                data.append(self._encode(served.register(rid, name)))
            for sub_id, ((pattern, queue), _) in self._subs.items():
                self._pending[sub_id] = _Pending(None, f"subscribing to {pattern!r} again")
                data.append(self._encode(subscribe_frame(sub_id, pattern, queue)))
        return data

    def give_up(self, waited: float, error: Optional[BaseException]) -> List[Outcome[W, S]]:
        """Reconnecting failed for `waited` seconds (last with `error`): the client is done, every subscription ends."""
        last = "" if error is None else f" (the last attempt: {error})"
        reason = (
            f"gave up reconnecting to the broker at {self._address} after {waited:.1f} s{last}; "
            "start the broker (`plexus broker`) and restart this program, or raise reconnect_timeout"
        )
        with self._lock:
            self._closed = True
            self._reason = self._failure = reason
            subs = [sub for _, sub in self._subs.values()]
            self._subs.clear()
        log.error("%s", reason)
        return [End(sub, ConnectionLost(reason)) for sub in subs]

    def close(self) -> List[Outcome[W, S]]:
        """The user closes the client: no request starts from now on, running handlers are told to stop."""
        with self._lock:
            self._closing = True
            self._closed = True
            contexts = list(self._serving.values())
            self._serving.clear()
        return self._abandon(contexts)

    # Internals ----------------------------------------------------------------------------

    def _start(
        self, frame: Frame, wait: Optional[float], what: str, *, cancellable: bool = False, claim: str = ""
    ) -> Request[W]:
        """Gives `frame` a fresh id and a waiter for its answer; the caller holds the lock."""
        self.check_open()
        rid = next(self._ids)
        data = self._encode(replace(frame, id=rid))
        waiter = self._new_waiter()
        self._pending[rid] = _Pending(waiter, what, claim)
        cancel = encode(Frame(Kind.CANCEL, rid)) if cancellable else None
        return Request(rid, data, waiter, wait, what, self._epoch, cancel, claim)

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

    @staticmethod
    def _abandon(contexts: List[CallContext]) -> List[Outcome[W, S]]:
        """Tells the handlers of these calls that nobody waits for their answer any more."""
        for context in contexts:
            context._cancel()
        return [Abandon(context) for context in contexts]

    def _on_answer(self, frame: Frame) -> List[Outcome[W, S]]:
        with self._lock:
            entry = self._pending.pop(frame.id, None)
        if entry is None:
            if frame.kind == Kind.ERROR and frame.id == 0:
                log.warning("the broker reported an error: %s", error_from_frame(frame))
            return []
        result: Any = None
        error: Optional[BaseException] = None
        if frame.kind == Kind.ERROR:
            error = error_from_frame(frame)
        else:
            try:
                result = loads(frame.payload)
            except ValueError as exc:
                error = exc
        if entry.waiter is None:
            if error is not None:
                log.warning("%s failed: %s", entry.what, error)
            return []
        return [Answer(entry.waiter, result, error)]

    def _on_call(self, frame: Frame) -> Union[Serve, Send]:
        obj, method = frame.string(0), frame.string(1)
        with self._lock:
            served = self._objects.get(obj)
            epoch = self._epoch
        if served is None:
            refusal = error_frame(frame.id, NoSuchObject(f"this connection does not serve '{obj}'"))
            return Send(self._answer(refusal), epoch)
        context = CallContext(obj, method, frame.aux / 1000)
        try:
            fn, (args, kwargs) = prepare(served.methods, frame, context)
        except Exception as exc:
            return Send(self._answer(error_frame(frame.id, exc)), epoch)
        with self._lock:
            self._serving[frame.id] = context
        return Serve(frame.id, fn, args, kwargs, context, epoch)
