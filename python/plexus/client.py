"""The blocking client: one connection, a reader thread, calls from any thread, served methods on a pool."""

from __future__ import annotations

import itertools
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import IO, Any, Callable, Dict, Iterable, List, Optional, Tuple, TypeVar, Union

from ._codec import DEFAULT_MAX_FRAME, HEADER_LEN, Frame, Kind, decode_body, decode_header, encode
from ._dispatch import Methods, error_frame, error_from_frame, loads, methods_of, prepare, reply_frame
from ._names import validate_name
from ._requests import (
    BROKER_OBJECT,
    CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    GRACE,
    REQUEST_TIMEOUT,
    call_frame,
    default_client_name,
    hello_frame,
    local_wait,
    publish_frame,
    register_frame,
    subscribe_frame,
    unregister_frame,
    wait_for_params,
)
from ._transport import Address, open_socket, resolve_address
from .errors import BadFrame, ConnectionLost, FrameTooLarge, Internal, NameTaken, NoSuchObject, Timeout
from .events import Event, Subscription

log = logging.getLogger("plexus")

F = TypeVar("F", bound=Callable[..., Any])


def read_frame(stream: IO[bytes], max_frame: int) -> Optional[Frame]:
    """The next frame from a buffered binary stream; `None` at a clean end of stream."""
    head = stream.read(HEADER_LEN)
    if not head:
        return None
    if len(head) < HEADER_LEN:
        raise ConnectionLost("the connection closed in the middle of a frame header")
    header = decode_header(head, max_frame)
    body = stream.read(header.body_len) if header.body_len else b""
    if len(body) < header.body_len:
        raise ConnectionLost("the connection closed in the middle of a frame body")
    return decode_body(header, body)


class _Slot:
    """Where the reader thread leaves the answer to one request."""

    __slots__ = ("done", "frame")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.frame: Optional[Frame] = None


def connect(
    bus: Optional[str] = None,
    name: Optional[str] = None,
    *,
    workers: int = 16,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> Client:
    """Connects to the broker and says hello.

    `bus` is `unix:/path`, `tcp://host:port` or a path; without it `$PLEXUS_BUS`, else the default
    socket. `name` is the client name the broker shows (default `python:<program>`). `workers` is
    the number of threads that run served methods. Raises `NoBroker` when nobody listens, or the
    broker's error when it refuses the hello.
    """
    address = resolve_address(bus)
    client_name = name or default_client_name()
    sock = open_socket(address, connect_timeout)
    try:
        stream = sock.makefile("rb")
        welcome = _handshake(sock, stream, address, client_name)
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return Client(sock, stream, address, client_name, welcome, workers)


def _handshake(sock: socket.socket, stream: IO[bytes], address: Address, name: str) -> Frame:
    """Sends `hello` and returns the broker's `welcome`."""
    try:
        sock.sendall(encode(hello_frame(name)))
        frame = read_frame(stream, DEFAULT_MAX_FRAME)
    except socket.timeout:
        raise Timeout(f"the broker at {address} did not answer hello in time") from None
    except OSError as exc:
        raise ConnectionLost(f"the connection to {address} failed during the handshake: {exc}") from exc
    if frame is None:
        raise ConnectionLost(f"the broker at {address} closed the connection during the handshake")
    if frame.kind == Kind.ERROR:
        raise error_from_frame(frame)
    if frame.kind != Kind.WELCOME:
        raise BadFrame(f"expected welcome from {address}, got {frame.kind.name.lower()}")
    return frame


class Client:
    """A connection to the broker. Use `connect()` to make one; every method is thread-safe."""

    def __init__(
        self,
        sock: socket.socket,
        stream: IO[bytes],
        address: Address,
        name: str,
        welcome: Frame,
        workers: int,
    ) -> None:
        self.address = address
        self.name = name
        self.conn_id = welcome.id
        self.max_frame = welcome.aux or DEFAULT_MAX_FRAME
        self.broker_version = welcome.string(0)
        self._sock = sock
        self._stream = stream
        self._workers = workers
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: Dict[int, _Slot] = {}
        self._subs: Dict[int, Subscription] = {}
        self._objects: Dict[str, Methods] = {}
        self._serving: Dict[int, bool] = {}
        self._pool: Optional[ThreadPoolExecutor] = None
        self._closed = False
        self._closing = False
        self._reason = ""
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, name=f"plexus-reader-{self.conn_id}", daemon=True)
        self._reader.start()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<plexus.Client {self.name!r} conn {self.conn_id} at {self.address} {state}>"

    # Requests -------------------------------------------------------------------------------

    def call(self, obj: str, method: str, params: Any = None, timeout: Optional[float] = DEFAULT_TIMEOUT) -> Any:
        """Calls `obj.method(params)` and returns the decoded JSON result.

        `timeout` is in seconds (`None` for the broker's default); the broker answers `Timeout`
        when it passes, and the client gives up on its own a little later if no answer came.
        An `error` answer raises the matching `plexus.Error` subclass.
        """
        frame = call_frame(0, obj, method, params, timeout)
        rid, slot = self._begin()
        answer = self._finish(rid, slot, replace(frame, id=rid), local_wait(timeout), f"{obj}.{method}", cancel=True)
        return loads(answer.payload)

    def publish(self, topic: str, payload: Any = None, *, ack: bool = False) -> Optional[Dict[str, int]]:
        """Publishes `payload` (as JSON) on `topic`.

        Without `ack` it returns once the frame is written. With `ack` it waits for the broker's
        count `{"delivered": N, "dropped": M}` and returns it.
        """
        frame = publish_frame(0, topic, payload, ack)
        if not ack:
            self._send(frame)
            return None
        rid, slot = self._begin()
        answer = self._finish(rid, slot, replace(frame, id=rid), REQUEST_TIMEOUT, f"publish on {topic}")
        result: Dict[str, int] = loads(answer.payload)
        return result

    def subscribe(self, pattern: str, callback: Optional[Callable[[Event], Any]] = None) -> Subscription:
        """Subscribes to topics matching `pattern` (`*` is one segment, a last `>` one or more).

        Returns a `Subscription`: iterate it or call `get(timeout)`. With `callback`, each event is
        passed to `callback` on a thread of its own instead (an exception it raises is logged).
        """
        frame = subscribe_frame(0, pattern)
        rid, slot = self._begin()
        sub = Subscription(rid, pattern, self._unsubscribe)
        with self._lock:
            self._subs[rid] = sub
        try:
            self._finish(rid, slot, replace(frame, id=rid), REQUEST_TIMEOUT, f"subscribe {pattern}")
        except BaseException:
            with self._lock:
                self._subs.pop(rid, None)
            sub._end()
            raise
        if callback is not None:
            thread = threading.Thread(
                target=_run_callback, args=(sub, callback), name=f"plexus-sub-{rid}", daemon=True
            )
            thread.start()
        return sub

    def wait_for(self, names: Union[str, Iterable[str]], timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Blocks until every name in `names` is registered; raises `Timeout` after `timeout` s.

        The broker's `Timeout` carries `data={"missing": [...]}`.
        """
        return self.call(BROKER_OBJECT, "wait_for", wait_for_params(names, timeout), timeout=timeout + GRACE)

    def list(self) -> List[Dict[str, Any]]:
        """The broker's registered names with their owners (`plexus.list`)."""
        result: List[Dict[str, Any]] = self.call(BROKER_OBJECT, "list")
        return result

    def stats(self) -> Dict[str, Any]:
        """The broker's counters (`plexus.stats`)."""
        result: Dict[str, Any] = self.call(BROKER_OBJECT, "stats")
        return result

    def ping(self) -> Dict[str, Any]:
        """Asks the broker for `{"pong": true, "conn_id": N}` (`plexus.ping`)."""
        result: Dict[str, Any] = self.call(BROKER_OBJECT, "ping")
        return result

    # Serving --------------------------------------------------------------------------------

    def serve(self, name: str, target: Any, shared: bool = False) -> None:
        """Registers `name` and answers its calls with `target`'s methods.

        `target` is an object (its public callables are the methods) or a dict of name to
        function. With `shared`, the name is a queue group: calls go round-robin to its members.
        Raises `NameTaken` if another connection owns the name.
        """
        validate_name(name)
        methods = methods_of(target)
        with self._lock:
            if name in self._objects:
                raise NameTaken(f"this client already serves {name!r}")
            self._objects[name] = methods
        self._claim(name, shared)

    def method(self, obj: str, name: Optional[str] = None, *, shared: bool = False) -> Callable[[F], F]:
        """Decorator: serve the function as `obj.name` (default: the function's name).

        The first method of an object registers the object's name.
        """
        validate_name(obj)

        def decorate(fn: F) -> F:
            method_name = name or fn.__name__
            with self._lock:
                table = self._objects.get(obj)
                if table is not None:
                    table[method_name] = fn
                    declared = list(table)
                else:
                    self._objects[obj] = {method_name: fn}
            if table is None:
                self._claim(obj, shared)
            else:
                self._request(lambda rid: register_frame(rid, obj, shared, declared), f"declare {obj}.{method_name}")
            return fn

        return decorate

    def unserve(self, name: str) -> None:
        """Unregisters `name`; calls to it fail with `NoSuchObject` from then on."""
        with self._lock:
            self._objects.pop(name, None)
        self._request(lambda rid: unregister_frame(rid, name), f"unregister {name}")

    def run_forever(self) -> None:
        """Blocks until the connection ends (the broker stops, or another thread calls `close()`)."""
        self._done.wait()

    # Lifetime -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the connection has ended."""
        return self._closed

    def close(self) -> None:
        """Closes the connection: pending calls fail with `ConnectionLost`, subscriptions end."""
        with self._lock:
            self._closing = True
            self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=5)
        self._stream.close()
        self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Internals ------------------------------------------------------------------------------

    def _begin(self) -> Tuple[int, _Slot]:
        """A fresh request id and the slot its answer will land in."""
        slot = _Slot()
        with self._lock:
            if self._closed:
                raise ConnectionLost(self._reason or "the client is closed")
            rid = next(self._ids)
            self._pending[rid] = slot
        return rid, slot

    def _finish(
        self, rid: int, slot: _Slot, frame: Frame, wait: Optional[float], what: str, cancel: bool = False
    ) -> Frame:
        """Sends request `frame` and waits for its answer; an `error` answer is raised."""
        try:
            self._send(frame)
            if not slot.done.wait(wait):
                if cancel:
                    self._send_quietly(Frame(Kind.CANCEL, rid))
                raise Timeout(f"no answer to {what} within {wait} s")
        finally:
            with self._lock:
                self._pending.pop(rid, None)
        answer = slot.frame
        if answer is None:
            raise ConnectionLost(self._reason or "the client is closed")
        if answer.kind == Kind.ERROR:
            raise error_from_frame(answer)
        return answer

    def _request(self, build: Callable[[int], Frame], what: str) -> Frame:
        """Sends the request `build(id)` and waits up to `REQUEST_TIMEOUT` for its answer."""
        rid, slot = self._begin()
        return self._finish(rid, slot, build(rid), REQUEST_TIMEOUT, what)

    def _claim(self, name: str, shared: bool) -> None:
        """Registers `name`, whose method table is already installed; uninstalls it on failure."""
        try:
            declared = list(self._objects.get(name, {}))
            self._request(lambda rid: register_frame(rid, name, shared, declared), f"register {name}")
        except BaseException:
            with self._lock:
                self._objects.pop(name, None)
            raise

    def _send(self, frame: Frame) -> None:
        """Writes one frame; raises `FrameTooLarge` over the broker's limit, `ConnectionLost` if closed."""
        data = encode(frame)
        if len(data) > self.max_frame:
            raise FrameTooLarge(f"frame of {len(data)} bytes exceeds the broker's limit of {self.max_frame} bytes")
        with self._write_lock:
            if self._closed:
                raise ConnectionLost(self._reason or "the client is closed")
            try:
                self._sock.sendall(data)
            except OSError as exc:
                raise ConnectionLost(f"writing to the broker at {self.address} failed: {exc}") from exc

    def _send_quietly(self, frame: Frame) -> None:
        """Writes one frame when a failure needs no report (the connection is ending anyway)."""
        try:
            self._send(frame)
        except ConnectionLost:
            pass

    def _unsubscribe(self, sub_id: int) -> None:
        with self._lock:
            self._subs.pop(sub_id, None)
        self._send_quietly(Frame(Kind.UNSUBSCRIBE, sub_id))

    def _read_loop(self) -> None:
        reason = f"the broker at {self.address} closed the connection"
        try:
            while True:
                frame = read_frame(self._stream, self.max_frame)
                if frame is None:
                    break
                self._dispatch(frame)
        except Exception as exc:
            reason = f"the connection to the broker at {self.address} failed: {exc}"
        finally:
            self._end(reason)

    def _dispatch(self, frame: Frame) -> None:
        kind = frame.kind
        if kind in (Kind.REPLY, Kind.ERROR, Kind.PONG):
            with self._lock:
                slot = self._pending.get(frame.id)
            if slot is not None:
                slot.frame = frame
                slot.done.set()
            elif kind == Kind.ERROR and frame.id == 0:
                log.warning("the broker reported an error: %s", error_from_frame(frame))
        elif kind == Kind.EVENT:
            with self._lock:
                sub = self._subs.get(frame.id)
            if sub is not None:
                sub._deliver(Event(frame.string(0), frame.payload, frame.aux))
        elif kind == Kind.CALL:
            self._on_call(frame)
        elif kind == Kind.CANCEL:
            with self._lock:
                if frame.id in self._serving:
                    self._serving[frame.id] = True
        else:
            log.warning("ignoring an unexpected %s frame from the broker", kind.name.lower())

    def _on_call(self, frame: Frame) -> None:
        obj = frame.string(0)
        with self._lock:
            methods = self._objects.get(obj)
            if methods is not None:
                self._serving[frame.id] = False
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix=f"plexus-worker-{self.conn_id}")
                pool = self._pool
        if methods is None:
            self._send_quietly(error_frame(frame.id, NoSuchObject(f"this connection does not serve '{obj}'")))
            return
        try:
            pool.submit(self._serve_call, frame, methods)
        except RuntimeError:
            pass

    def _serve_call(self, frame: Frame, methods: Methods) -> None:
        try:
            fn, (args, kwargs) = prepare(methods, frame)
            answer = reply_frame(frame.id, fn(*args, **kwargs))
        except Exception as exc:
            answer = error_frame(frame.id, exc)
        with self._lock:
            cancelled = self._serving.pop(frame.id, False)
        if cancelled:
            return
        try:
            self._send_quietly(answer)
        except FrameTooLarge as exc:
            self._send_quietly(error_frame(frame.id, Internal(f"the answer is too large: {exc}")))

    def _end(self, reason: str) -> None:
        """The connection is over: fail pending requests, end subscriptions, stop the pool."""
        with self._lock:
            self._closed = True
            self._reason = "the client was closed" if self._closing else reason
            slots = list(self._pending.values())
            subs = list(self._subs.values())
            self._subs.clear()
            pool = self._pool
        if not self._closing:
            log.warning("%s", reason)
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for slot in slots:
            slot.done.set()
        for sub in subs:
            sub._end()
        if pool is not None:
            pool.shutdown(wait=False)
        self._done.set()


def _run_callback(sub: Subscription, callback: Callable[[Event], Any]) -> None:
    """Feeds every event of `sub` to `callback` until the subscription ends."""
    for event in sub:
        try:
            callback(event)
        except Exception:
            log.exception("the callback of subscription %r raised", sub.pattern)
