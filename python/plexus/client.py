"""The blocking client: drives a `Session` with a socket, a reader thread and a pool for served methods."""

from __future__ import annotations

import functools
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, Callable, Dict, Iterable, List, Optional, TypeVar, Union

from ._codec import DEFAULT_MAX_FRAME, HEADER_LEN, Frame, decode_body, decode_header
from ._names import validate_name
from ._requests import BROKER_OBJECT, CONNECT_TIMEOUT, DEFAULT_TIMEOUT, GRACE, default_client_name, wait_for_params
from ._session import Answer, Deliver, End, Outcome, Request, Serve, Session, Welcome, check_welcome, hello
from ._transport import Address, open_socket, resolve_address
from .errors import ConnectionLost, Timeout
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
    """Where the reader thread leaves the answer to one request: a result or an error."""

    __slots__ = ("done", "result", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: Optional[BaseException] = None

    def settle(self, result: Any, error: Optional[BaseException]) -> None:
        """Leaves the answer and wakes the waiting thread."""
        self.result = result
        self.error = error
        self.done.set()

    def take(self) -> Any:
        """The result; the error is raised instead if there is one."""
        if self.error is not None:
            raise self.error
        return self.result


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


def _handshake(sock: socket.socket, stream: IO[bytes], address: Address, name: str) -> Welcome:
    """Sends `hello` and returns the broker's `welcome`."""
    try:
        sock.sendall(hello(name))
        frame = read_frame(stream, DEFAULT_MAX_FRAME)
    except socket.timeout:
        raise Timeout(f"the broker at {address} did not answer hello in time") from None
    except OSError as exc:
        raise ConnectionLost(f"the connection to {address} failed during the handshake: {exc}") from exc
    return check_welcome(frame, address)


class Client:
    """A connection to the broker. Use `connect()` to make one; every method is thread-safe."""

    def __init__(
        self,
        sock: socket.socket,
        stream: IO[bytes],
        address: Address,
        name: str,
        welcome: Welcome,
        workers: int,
    ) -> None:
        self.address = address
        self.name = name
        self.conn_id, self.max_frame, self.broker_version = welcome
        self._session: Session[_Slot, Subscription] = Session(address, self.max_frame, _Slot)
        self._sock = sock
        self._stream = stream
        self._workers = workers
        self._write_lock = threading.Lock()
        self._pool: Optional[ThreadPoolExecutor] = None
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, name=f"plexus-reader-{self.conn_id}", daemon=True)
        self._reader.start()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<plexus.Client {self.name!r} conn {self.conn_id} at {self.address} {state}>"

    # Requests -------------------------------------------------------------------------------

    def call(self, obj: str, method: str, params: Any = None, timeout: Optional[float] = DEFAULT_TIMEOUT) -> Any:
        """Calls `obj.method(params)` and returns the decoded JSON result.

        `timeout` is in seconds (`None` for the broker's default); the broker answers `Timeout`
        when it passes, and the client gives up on its own a little later if no answer came.
        An `error` answer raises the matching `plexus.Error` subclass.
        """
        return self._finish(self._session.call(obj, method, params, timeout))

    def publish(self, topic: str, payload: Any = None, *, ack: bool = False) -> Optional[Dict[str, int]]:
        """Publishes `payload` (as JSON) on `topic`.

        Without `ack` it returns once the frame is written. With `ack` it waits for the broker's
        count `{"delivered": N, "dropped": M}` and returns it.
        """
        if not ack:
            self._write(self._session.publish(topic, payload))
            return None
        counts: Dict[str, int] = self._finish(self._session.publish_acked(topic, payload))
        return counts

    def subscribe(self, pattern: str, callback: Optional[Callable[[Event], Any]] = None) -> Subscription:
        """Subscribes to topics matching `pattern` (`*` is one segment, a last `>` one or more).

        Returns a `Subscription`: iterate it or call `get(timeout)`. With `callback`, each event is
        passed to `callback` on a thread of its own instead (an exception it raises is logged).
        """
        request, sub = self._session.subscribe(pattern, lambda sub_id: Subscription(sub_id, pattern, self._unsubscribe))
        self._finish(request)
        if callback is not None:
            thread = threading.Thread(
                target=_run_callback, args=(sub, callback), name=f"plexus-sub-{sub.id}", daemon=True
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
        self._finish(self._session.serve(name, target, shared))

    def method(self, obj: str, name: Optional[str] = None, *, shared: bool = False) -> Callable[[F], F]:
        """Decorator: serve the function as `obj.name` (default: the function's name).

        The first method of an object registers the object's name.
        """
        validate_name(obj)

        def decorate(fn: F) -> F:
            self._finish(self._session.add_method(obj, name or fn.__name__, fn, shared))
            return fn

        return decorate

    def unserve(self, name: str) -> None:
        """Unregisters `name`; calls to it fail with `NoSuchObject` from then on."""
        self._finish(self._session.unserve(name))

    def run_forever(self) -> None:
        """Blocks until the connection ends (the broker stops, or another thread calls `close()`)."""
        self._done.wait()

    # Lifetime -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the connection has ended."""
        return self._session.closed

    def close(self) -> None:
        """Closes the connection: pending calls fail with `ConnectionLost`, subscriptions end."""
        self._session.close()
        self._shutdown()
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=5)
        self._stream.close()
        self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Internals ------------------------------------------------------------------------------

    def _finish(self, request: Request[_Slot]) -> Any:
        """Sends `request` and waits for its answer: returns the result, raises an error answer."""
        ok = False
        try:
            self._write(request.data)
            if not request.waiter.done.wait(request.wait):
                if request.cancel is not None:
                    self._write_quietly(request.cancel)
                raise request.timed_out()
            result = request.waiter.take()
            ok = True
            return result
        finally:
            self._apply(self._session.settle(request, ok))

    def _write(self, data: bytes) -> None:
        """Writes bytes the session made; raises `ConnectionLost` if the connection is closed."""
        with self._write_lock:
            self._session.check_open()
            try:
                self._sock.sendall(data)
            except OSError as exc:
                raise ConnectionLost(f"writing to the broker at {self.address} failed: {exc}") from exc

    def _write_quietly(self, data: bytes) -> None:
        """Writes bytes when a failure needs no report (the connection is ending anyway)."""
        try:
            self._write(data)
        except ConnectionLost:
            pass

    def _unsubscribe(self, sub_id: int) -> None:
        self._write_quietly(self._session.unsubscribe(sub_id))

    def _shutdown(self) -> None:
        """Shuts the socket down both ways, which ends the reader thread."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read_loop(self) -> None:
        """Hands the broker's frames to the session until the connection ends, then winds the client down."""
        error: Optional[Exception] = None
        try:
            for frame in iter(functools.partial(read_frame, self._stream, self.max_frame), None):
                self._apply(self._session.receive(frame))
        except Exception as exc:
            error = exc
        finally:
            self._apply(self._session.connection_lost(error))
            self._shutdown()
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self._done.set()

    def _apply(self, outcomes: Iterable[Outcome[_Slot, Subscription]]) -> None:
        """Carries out what the session says."""
        for outcome in outcomes:
            if isinstance(outcome, Answer):
                outcome.waiter.settle(outcome.result, outcome.error)
            elif isinstance(outcome, Deliver):
                outcome.subscription._deliver(outcome.event)
            elif isinstance(outcome, End):
                outcome.subscription._end()
            elif isinstance(outcome, Serve):
                self._submit(outcome)
            else:
                self._write_quietly(outcome.data)

    def _submit(self, call: Serve) -> None:
        """Runs a served method on the worker pool (started on the first call; only the reader thread uses it)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix=f"plexus-worker-{self.conn_id}")
        try:
            self._pool.submit(self._serve_call, call)
        except RuntimeError:
            pass  # the interpreter is shutting down

    def _serve_call(self, call: Serve) -> None:
        try:
            result = call.fn(*call.args, **call.kwargs)
        except Exception as exc:
            answer = self._session.answered(call.id, error=exc)
        else:
            answer = self._session.answered(call.id, result)
        if answer is not None:
            self._write_quietly(answer)


def _run_callback(sub: Subscription, callback: Callable[[Event], Any]) -> None:
    """Feeds every event of `sub` to `callback` until the subscription ends."""
    for event in sub:
        try:
            callback(event)
        except Exception:
            log.exception("the callback of subscription %r raised", sub.pattern)
