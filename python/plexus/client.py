"""The blocking client: drives a `Session` with a socket, a reader thread that reconnects, and a pool for served methods."""

from __future__ import annotations

import functools
import logging
import socket
import threading
from typing import IO, Any, Callable, Dict, Iterable, List, Optional, Tuple, TypeVar, Union

from . import _contracts
from ._codec import DEFAULT_MAX_FRAME, HEADER_LEN, Frame, decode_body, decode_header
from ._names import validate_name
from ._pool import WorkerPool
from ._reconnect import Backoff, Policy
from ._requests import BROKER_OBJECT, CONNECT_TIMEOUT, DEFAULT_TIMEOUT, GRACE, default_client_name, wait_for_params
from ._session import Abandon, Answer, Deliver, End, Outcome, Request, Serve, Session, Welcome, check_welcome, hello
from ._transport import Address, with_token, open_socket, resolve_address
from .errors import ConnectionLost, Overloaded, Timeout, TransportError
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
    reconnect: bool = True,
    reconnect_timeout: Optional[float] = None,
    token: Optional[Union[str, bytes]] = None,
) -> Client:
    """Connects to the broker and says hello.

    `bus` is `unix:/path`, `tcp://host:port` or a path; without it `$PLEXUS_BUS`, else the default
    socket. `name` is the client name the broker shows (default `python:<program>`). `workers` is
    the number of served methods that run at once, each on a thread; a call beyond that is
    answered `Overloaded` at once. Raises `NoBroker` when nobody listens, or the broker's error
    when it refuses the hello.

    When the connection is lost the client reconnects (waiting 50 ms, doubling to 2 s), then
    registers its objects and subscribes again; requests open at the loss fail with
    `ConnectionLost`, and requests made meanwhile with `NotConnected`. `reconnect_timeout` is how
    many seconds to keep trying (`None`: forever); with `reconnect=False`, or once it gives up, the
    client is done and `run_forever()` raises `ConnectionLost`.

    `token` (default `$PLEXUS_TOKEN`) is presented in `hello` to a broker on TCP that asks for one
    (its `--token-file`); it is never sent on a Unix socket, where the broker knows the user.
    """
    address = with_token(resolve_address(bus), token)
    client_name = name or default_client_name()
    policy = Policy(reconnect, reconnect_timeout, connect_timeout)
    pool = WorkerPool(workers, f"plexus-worker-{client_name}")
    sock, stream, welcome = _open(address, client_name, connect_timeout)
    return Client(sock, stream, address, client_name, welcome, pool, policy)


def _open(address: Address, name: str, timeout: float) -> Tuple[socket.socket, IO[bytes], Welcome]:
    """A connected socket, its read stream and the broker's `welcome` after `hello`."""
    sock = open_socket(address, timeout)
    try:
        stream = sock.makefile("rb")
        welcome = _handshake(sock, stream, address, name)
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return sock, stream, welcome


def _handshake(sock: socket.socket, stream: IO[bytes], address: Address, name: str) -> Welcome:
    """Sends `hello` and returns the broker's `welcome`."""
    try:
        sock.sendall(hello(name, address.token))
        frame = read_frame(stream, DEFAULT_MAX_FRAME)
    except socket.timeout:
        raise Timeout(f"the broker at {address} did not answer hello in time") from None
    except OSError as exc:
        raise ConnectionLost(f"the connection to {address} failed during the handshake: {exc}") from exc
    return check_welcome(frame, address)


class Client:
    """A connection to the broker, kept up across broker restarts. Use `connect()` to make one; every method is thread-safe."""

    def __init__(
        self,
        sock: socket.socket,
        stream: IO[bytes],
        address: Address,
        name: str,
        welcome: Welcome,
        pool: WorkerPool,
        policy: Policy,
    ) -> None:
        self.address = address
        self.name = name
        self.conn_id, self.max_frame, self.broker_version = welcome
        self._session: Session[_Slot, Subscription] = Session(address, self.max_frame, _Slot)
        self._sock = sock
        self._stream = stream
        self._pool = pool
        self._policy = policy
        self._write_lock = threading.Lock()
        self._closing = threading.Event()
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._run, name=f"plexus-reader-{self.conn_id}", daemon=True)
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

    def subscribe(
        self, pattern: str, callback: Optional[Callable[[Event], Any]] = None, queue: Optional[str] = None
    ) -> Subscription:
        """Subscribes to topics matching `pattern` (`*` is one segment, a last `>` one or more).

        With `queue`, the subscription joins that queue group: each matching event goes to one
        member of the group, round-robin.

        Returns a `Subscription`: iterate it or call `get(timeout)`. With `callback`, each event is
        passed to `callback` on a thread of its own instead (an exception it raises is logged).
        """
        request, sub = self._session.subscribe(
            pattern, lambda sub_id: Subscription(sub_id, pattern, self._unsubscribe), queue
        )
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

    def serve(
        self,
        name: str,
        target: Any,
        shared: bool = False,
        *,
        schemas: Optional[Dict[str, Any]] = None,
        topics: Optional[Dict[str, Any]] = None,
        typed: bool = False,
    ) -> None:
        """Registers `name` and answers its calls with `target`'s methods.

        `target` is an object (its public callables are the methods) or a dict of name to
        function. With `shared`, the name is a queue group: calls go round-robin to its members.
        Raises `NameTaken` if another connection owns the name.

        Contracts (JSON Schema 2020-12, checked by the broker): `schemas` maps a method to
        `{"params": schema, "result": schema, "description": "...", "deprecated": bool}`,
        `topics` a topic to its payload schema; with `typed`, each method's type hints give its
        params (an object of named arguments) and result schemas. A contract the broker refuses
        raises `InvalidParams` with the reason.
        """
        self._finish(self._session.serve(name, target, shared, schemas, topics, typed))

    def method(
        self,
        obj: str,
        name: Optional[str] = None,
        *,
        shared: bool = False,
        params: Any = None,
        result: Any = None,
        description: Optional[str] = None,
        deprecated: bool = False,
        typed: bool = False,
    ) -> Callable[[F], F]:
        """Decorator: serve the function as `obj.name` (default: the function's name).

        The first method of an object registers the object's name. `params` and `result` are
        JSON Schemas the broker checks calls and answers against (with `typed`, the function's
        type hints give those not passed); `description` and `deprecated` are shown by
        `plexus introspect`.
        """
        validate_name(obj)

        def decorate(fn: F) -> F:
            declared = _contracts.schemas_from_hints(fn) if typed else {}
            declared.update(_contracts.entry(params, result, description, deprecated))
            self._finish(self._session.add_method(obj, name or fn.__name__, fn, shared, declared))
            return fn

        return decorate

    def unserve(self, name: str) -> None:
        """Unregisters `name`; calls to it fail with `NoSuchObject` from then on."""
        self._finish(self._session.unserve(name))

    def run_forever(self) -> None:
        """Blocks until the client is closed (by another thread, or a served method).

        Raises `ConnectionLost` if the connection is lost for good first: `reconnect=False`, or
        reconnecting gave up. Left uncaught, that ends the program with a non-zero status.
        """
        self._done.wait()
        failure = self._session.failure
        if failure is not None:
            raise failure

    # Lifetime -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the client is done: closed, or its connection lost for good."""
        return self._session.closed

    def close(self) -> None:
        """Closes the connection: pending calls fail with `ConnectionLost`, subscriptions end.

        Served methods still running are cancelled (see `CallContext`); their threads are daemon
        threads, so one that never returns does not keep the program alive.
        """
        self._apply(self._session.close())
        self._closing.set()
        _shut(self._sock)
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=5)
        self._pool.shutdown()
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
            self._write(request.data, request.epoch)
            if not request.waiter.done.wait(request.wait):
                if request.cancel is not None:
                    self._write_quietly(request.cancel, request.epoch)
                raise request.timed_out()
            result = request.waiter.take()
            ok = True
            return result
        finally:
            self._apply(self._session.settle(request, ok))

    def _write(self, data: bytes, epoch: Optional[int] = None) -> None:
        """Writes bytes the session made (on connection `epoch` only, if given).

        Raises `ConnectionLost` once the client is done, `NotConnected` while it reconnects.
        """
        with self._write_lock:
            self._session.check_open(epoch)
            try:
                self._sock.sendall(data)
            except OSError as exc:
                raise ConnectionLost(f"writing to the broker at {self.address} failed: {exc}") from exc

    def _write_quietly(self, data: bytes, epoch: Optional[int] = None) -> None:
        """Writes bytes when a failure needs no report (the connection they were for is gone)."""
        try:
            self._write(data, epoch)
        except TransportError:
            pass

    def _unsubscribe(self, sub_id: int) -> None:
        self._write_quietly(self._session.unsubscribe(sub_id))

    def _run(self) -> None:
        """The reader thread: serves each connection until it ends, reconnecting while the policy says so."""
        try:
            while True:
                error = self._read_frames()
                reconnect = self._policy.enabled and not self._closing.is_set()
                self._apply(self._session.connection_lost(error, reconnect=reconnect))
                _shut(self._sock)
                self._stream.close()
                self._sock.close()
                if not reconnect or not self._reconnect():
                    return
        finally:
            self._pool.shutdown()
            self._done.set()

    def _read_frames(self) -> Optional[Exception]:
        """Hands the broker's frames to the session until the connection ends; returns why (`None`: a clean end)."""
        try:
            for frame in iter(functools.partial(read_frame, self._stream, self.max_frame), None):
                self._apply(self._session.receive(frame))
        except Exception as exc:
            return exc
        return None

    def _reconnect(self) -> bool:
        """Connects again, backing off, and restores the session; False if closed or given up meanwhile."""
        backoff = Backoff(self._policy.give_up_after)
        last_error: Optional[Exception] = None
        while (wait := backoff.next_wait()) is not None:
            if self._closing.wait(wait):
                break
            try:
                sock, stream, welcome = _open(self.address, self.name, self._policy.connect_timeout)
            except Exception as exc:  # whatever went wrong, this attempt failed and the next may work
                last_error = exc
                continue
            return self._resume(sock, stream, welcome, backoff.waited())
        if self._closing.is_set():
            self._apply(self._session.connection_lost(None, reconnect=False))
        else:
            self._apply(self._session.give_up(backoff.waited(), last_error))
        return False

    def _resume(self, sock: socket.socket, stream: IO[bytes], welcome: Welcome, waited: float) -> bool:
        """Makes a new connection the client's, first sending it the registrations and subscriptions."""
        with self._write_lock:
            try:
                replay = self._session.reconnected(welcome.max_frame)
            except ConnectionLost:
                stream.close()
                sock.close()
                self._apply(self._session.connection_lost(None, reconnect=False))
                return False
            self._sock, self._stream = sock, stream
            self.conn_id, self.max_frame, self.broker_version = welcome
            try:
                sock.sendall(b"".join(replay))
            except OSError:
                pass  # reading from it fails too, and the client reconnects again
        if self._closing.is_set():
            _shut(sock)  # close() ran while this connection was being set up and may have missed it
            return True
        log.warning(
            "reconnected to the broker at %s after %.1f s; served objects and subscriptions restored",
            self.address,
            waited,
        )
        return True

    def _apply(self, outcomes: Iterable[Outcome[_Slot, Subscription]]) -> None:
        """Carries out what the session says."""
        for outcome in outcomes:
            if isinstance(outcome, Answer):
                outcome.waiter.settle(outcome.result, outcome.error)
            elif isinstance(outcome, Deliver):
                outcome.subscription._deliver(outcome.event)
            elif isinstance(outcome, End):
                outcome.subscription._end(outcome.error)
            elif isinstance(outcome, Serve):
                send = functools.partial(self._send_answer, outcome)
                if not self._pool.try_run(functools.partial(self._serve_call, outcome), send):
                    self._refuse(outcome)
            elif isinstance(outcome, Abandon):
                pass  # a thread cannot be stopped: the handler sees its context cancelled
            else:
                self._write_quietly(outcome.data, outcome.epoch)

    def _serve_call(self, call: Serve) -> Optional[bytes]:
        """Runs a served method (on a pool thread); its answer, `None` if the caller gave up."""
        try:
            result = call.fn(*call.args, **call.kwargs)
        except Exception as exc:
            return self._session.answered(call, error=exc)
        return self._session.answered(call, result)

    def _send_answer(self, call: Serve, answer: Optional[bytes]) -> None:
        if answer is not None:
            self._write_quietly(answer, call.epoch)

    def _refuse(self, call: Serve) -> None:
        """Answers `overloaded` to a call that found every worker thread busy."""
        busy = Overloaded(
            f"this worker is already running {self._pool.size} calls, its limit (workers={self._pool.size}); "
            "try again later"
        )
        self._send_answer(call, self._session.answered(call, error=busy))


def _shut(sock: socket.socket) -> None:
    """Shuts `sock` down both ways, which wakes a thread reading it."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _run_callback(sub: Subscription, callback: Callable[[Event], Any]) -> None:
    """Feeds every event of `sub` to `callback` until the subscription ends (the client reports a lost broker)."""
    try:
        for event in sub:
            try:
                callback(event)
            except Exception:
                log.exception("the callback of subscription %r raised", sub.pattern)
    except ConnectionLost:
        pass
