"""The asyncio client: drives a `Session` with asyncio streams; the operations of `plexus.Client` as coroutines."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Set, Tuple, TypeVar, Union

from . import _contracts
from ._codec import DEFAULT_MAX_FRAME, HEADER_LEN, Frame, decode_body, decode_header
from ._names import validate_name
from ._pool import WorkerPool
from ._reconnect import Backoff, Policy
from ._requests import BROKER_OBJECT, CONNECT_TIMEOUT, DEFAULT_TIMEOUT, GRACE, default_client_name, wait_for_params
from ._session import Abandon, Answer, Deliver, End, Outcome, Request, Serve, Session, Welcome, check_welcome, hello
from ._transport import Address, with_token, open_stream, resolve_address
from .context import CallContext
from .errors import ConnectionLost, Error, Overloaded, Timeout, TransportError
from .events import Event

__all__ = ["Client", "Subscription", "connect"]

log = logging.getLogger("plexus")

F = TypeVar("F", bound=Callable[..., Any])

_CLOSED = object()

CLOSE_WAIT = 5.0
"""Seconds `close()` waits for the reader and for cancelled tasks to end."""


async def read_frame(reader: asyncio.StreamReader, max_frame: int) -> Optional[Frame]:
    """The next frame from `reader`; `None` at a clean end of stream."""
    try:
        head = await reader.readexactly(HEADER_LEN)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise ConnectionLost("the connection closed in the middle of a frame header") from None
    header = decode_header(head, max_frame)
    try:
        body = await reader.readexactly(header.body_len)
    except asyncio.IncompleteReadError:
        raise ConnectionLost("the connection closed in the middle of a frame body") from None
    return decode_body(header, body)


async def connect(
    bus: Optional[str] = None,
    name: Optional[str] = None,
    *,
    workers: int = 256,
    connect_timeout: float = CONNECT_TIMEOUT,
    reconnect: bool = True,
    reconnect_timeout: Optional[float] = None,
    token: Optional[Union[str, bytes]] = None,
) -> Client:
    """Connects to the broker and says hello; the arguments are those of `plexus.connect`.

    `workers` bounds the served methods running at once (coroutines as tasks, plain functions on
    daemon threads); a call beyond that is answered `Overloaded` at once.
    """
    address = with_token(resolve_address(bus), token)
    client_name = name or default_client_name()
    policy = Policy(reconnect, reconnect_timeout, connect_timeout)
    pool = WorkerPool(workers, f"plexus-worker-{client_name}")
    reader, writer, welcome = await _open(address, client_name, connect_timeout)
    return Client(reader, writer, address, client_name, welcome, pool, policy)


async def _open(
    address: Address, name: str, timeout: float
) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter, Welcome]:
    """A connected stream pair and the broker's `welcome` after `hello`."""
    reader, writer = await open_stream(address, timeout)
    try:
        writer.write(hello(name, address.token))
        await writer.drain()
        frame = await asyncio.wait_for(read_frame(reader, DEFAULT_MAX_FRAME), timeout)
    except asyncio.TimeoutError:
        writer.close()
        raise Timeout(f"the broker at {address} did not answer hello in time") from None
    except OSError as exc:
        writer.close()
        raise ConnectionLost(f"the connection to {address} failed during the handshake: {exc}") from exc
    except BaseException:
        writer.close()
        raise
    try:
        welcome = check_welcome(frame, address)
    except Error:
        writer.close()
        raise
    return reader, writer, welcome


class Subscription:
    """The events of one `subscribe` pattern: `async for` over it, or `await get(timeout)`.

    It lasts across reconnects (events published while the client was disconnected are lost).
    If the client loses the broker for good, reading past the last event raises `ConnectionLost`.
    """

    def __init__(self, sub_id: int, pattern: str, unsubscribe: Callable[[int], Awaitable[None]]) -> None:
        self.id = sub_id
        self.pattern = pattern
        self._unsubscribe = unsubscribe
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._closed = False
        self._error: Optional[ConnectionLost] = None

    def _deliver(self, event: Event) -> None:
        if not self._closed:
            self._queue.put_nowait(event)

    def _end(self, error: Optional[ConnectionLost] = None) -> bool:
        """Marks the subscription closed (by `error` if given) and wakes its readers; False if it already was."""
        if self._closed:
            return False
        self._closed = True
        self._error = error
        self._queue.put_nowait(_CLOSED)
        return True

    @property
    def closed(self) -> bool:
        """Whether the subscription was closed (by `close()` or because the connection ended)."""
        return self._closed

    async def get(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event; `None` once the subscription is closed. Raises `Timeout` after `timeout` s,
        and `ConnectionLost` once the client lost the broker for good."""
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            raise Timeout(f"no event on {self.pattern!r} within {timeout} s") from None
        if isinstance(item, Event):
            return item
        self._queue.put_nowait(_CLOSED)
        if self._error is not None:
            raise ConnectionLost(self._error.message)
        return None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        event = await self.get()
        if event is None:
            raise StopAsyncIteration
        return event

    async def close(self) -> None:
        """Ends the subscription: the broker stops sending, iteration stops."""
        if self._end():
            await self._unsubscribe(self.id)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class Client:
    """A connection to the broker for asyncio code, kept up across broker restarts. Use `await plexus.aio.connect()`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        address: Address,
        name: str,
        welcome: Welcome,
        pool: WorkerPool,
        policy: Policy,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.address = address
        self.name = name
        self.conn_id, self.max_frame, self.broker_version = welcome
        self._session: Session[asyncio.Future[Any], Subscription] = Session(
            address, self.max_frame, self._loop.create_future
        )
        self._reader = reader
        self._writer = writer
        self._pool = pool
        self._policy = policy
        self._write_lock = asyncio.Lock()
        self._tasks: Set[asyncio.Task[Any]] = set()
        self._handlers: Dict[CallContext, asyncio.Task[Any]] = {}
        self._closing = asyncio.Event()
        self._done = asyncio.Event()
        self._read_task = self._loop.create_task(self._run())

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<plexus.aio.Client {self.name!r} conn {self.conn_id} at {self.address} {state}>"

    # Requests -------------------------------------------------------------------------------

    async def call(
        self, obj: str, method: str, params: Any = None, timeout: Optional[float] = DEFAULT_TIMEOUT
    ) -> Any:
        """Calls `obj.method(params)` and returns the decoded JSON result (see `plexus.Client.call`)."""
        return await self._finish(self._session.call(obj, method, params, timeout))

    async def publish(self, topic: str, payload: Any = None, *, ack: bool = False) -> Optional[Dict[str, int]]:
        """Publishes `payload` (as JSON) on `topic`; with `ack`, returns the broker's delivery counts."""
        if not ack:
            await self._write(self._session.publish(topic, payload))
            return None
        counts: Dict[str, int] = await self._finish(self._session.publish_acked(topic, payload))
        return counts

    async def subscribe(
        self, pattern: str, callback: Optional[Callable[[Event], Any]] = None, queue: Optional[str] = None
    ) -> Subscription:
        """Subscribes to topics matching `pattern`; with `queue`, as a member of that queue group
        (each matching event goes to one member).

        Returns a `Subscription` to `async for` over. With `callback` (a function or a coroutine
        function), each event is passed to it from a task of its own instead.
        """
        request, sub = self._session.subscribe(
            pattern, lambda sub_id: Subscription(sub_id, pattern, self._unsubscribe), queue
        )
        await self._finish(request)
        if callback is not None:
            self._spawn(_run_callback(sub, callback))
        return sub

    async def wait_for(self, names: Union[str, Iterable[str]], timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Waits until every name in `names` is registered; raises `Timeout` after `timeout` s."""
        return await self.call(BROKER_OBJECT, "wait_for", wait_for_params(names, timeout), timeout=timeout + GRACE)

    async def list(self) -> List[Dict[str, Any]]:
        """The broker's registered names with their owners (`plexus.list`)."""
        result: List[Dict[str, Any]] = await self.call(BROKER_OBJECT, "list")
        return result

    async def stats(self) -> Dict[str, Any]:
        """The broker's counters (`plexus.stats`)."""
        result: Dict[str, Any] = await self.call(BROKER_OBJECT, "stats")
        return result

    async def ping(self) -> Dict[str, Any]:
        """Asks the broker for `{"pong": true, "conn_id": N}` (`plexus.ping`)."""
        result: Dict[str, Any] = await self.call(BROKER_OBJECT, "ping")
        return result

    # Serving --------------------------------------------------------------------------------

    async def serve(
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

        Coroutine functions run on the event loop; plain functions run in the loop's default
        executor, so a blocking method does not stall the loop. See `plexus.Client.serve`
        (also for the contract: `schemas`, `topics`, `typed`).
        """
        await self._finish(self._session.serve(name, target, shared, schemas, topics, typed))

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

        The first method of an object registers the object's name in a background task; a
        failure to register is logged. Use `serve` to get registration errors raised. The
        contract arguments are `plexus.Client.method`'s.
        """
        validate_name(obj)

        def decorate(fn: F) -> F:
            declared = _contracts.schemas_from_hints(fn) if typed else {}
            declared.update(_contracts.entry(params, result, description, deprecated))
            try:
                request = self._session.add_method(obj, name or fn.__name__, fn, shared, declared)
            except Exception:
                log.exception("registering %r failed", obj)
            else:
                self._spawn(self._register_logged(request, obj))
            return fn

        return decorate

    async def unserve(self, name: str) -> None:
        """Unregisters `name`; calls to it fail with `NoSuchObject` from then on."""
        await self._finish(self._session.unserve(name))

    async def run_forever(self) -> None:
        """Waits until the client is closed; raises `ConnectionLost` if the connection is lost for good first.

        See `plexus.Client.run_forever`.
        """
        await self._done.wait()
        failure = self._session.failure
        if failure is not None:
            raise failure

    # Lifetime -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the client is done: closed, or its connection lost for good."""
        return self._session.closed

    async def close(self) -> None:
        """Closes the connection: pending calls fail with `ConnectionLost`, subscriptions end,
        running handlers are cancelled (plain functions see their `CallContext` cancelled)."""
        self._apply(self._session.close())
        self._closing.set()
        self._writer.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._read_task), CLOSE_WAIT)
        except asyncio.TimeoutError:
            self._read_task.cancel()
        tasks = [t for t in (*self._tasks, *self._handlers.values()) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_WAIT)  # a handler that ignores its cancellation is left behind
        self._pool.shutdown()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # Internals ------------------------------------------------------------------------------

    async def _finish(self, request: Request[asyncio.Future[Any]]) -> Any:
        """Sends `request` and waits for its answer: returns the result, raises an error answer."""
        ok = False
        try:
            await self._write(request.data, request.epoch)
            result = await asyncio.wait_for(request.waiter, request.wait)
            ok = True
            return result
        except asyncio.TimeoutError:
            if request.cancel is not None:
                await self._write_quietly(request.cancel, request.epoch)
            raise request.timed_out() from None
        except asyncio.CancelledError:
            if request.cancel is not None and not self.closed:
                self._spawn(self._write_quietly(request.cancel, request.epoch))
            raise
        finally:
            self._apply(self._session.settle(request, ok))

    async def _register_logged(self, request: Request[asyncio.Future[Any]], name: str) -> None:
        """Finishes a registration from the `method` decorator, logging a failure (nobody waits for it)."""
        try:
            await self._finish(request)
        except Exception:
            log.exception("registering %r failed", name)

    async def _write(self, data: bytes, epoch: Optional[int] = None) -> None:
        """Writes bytes the session made (on connection `epoch` only, if given).

        Raises `ConnectionLost` once the client is done, `NotConnected` while it reconnects.
        """
        async with self._write_lock:
            self._session.check_open(epoch)
            try:
                self._writer.write(data)
                await self._writer.drain()
            except OSError as exc:
                raise ConnectionLost(f"writing to the broker at {self.address} failed: {exc}") from exc

    async def _write_quietly(self, data: bytes, epoch: Optional[int] = None) -> None:
        """Writes bytes when a failure needs no report (the connection they were for is gone)."""
        try:
            await self._write(data, epoch)
        except TransportError:
            pass

    async def _unsubscribe(self, sub_id: int) -> None:
        await self._write_quietly(self._session.unsubscribe(sub_id))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        """Runs `coro` as a task the client keeps until it ends (and cancels on close)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        """Serves each connection until it ends, reconnecting while the policy says so."""
        try:
            while True:
                error = await self._read_frames()
                reconnect = self._policy.enabled and not self._closing.is_set()
                self._apply(self._session.connection_lost(error, reconnect=reconnect))
                self._writer.close()
                if not reconnect or not await self._reconnect():
                    return
        except asyncio.CancelledError:
            self._apply(self._session.connection_lost(None, reconnect=False))  # close() stopped waiting for it
            raise
        finally:
            self._pool.shutdown()
            self._done.set()

    async def _read_frames(self) -> Optional[Exception]:
        """Hands the broker's frames to the session until the connection ends; returns why (`None`: a clean end)."""
        try:
            while (frame := await read_frame(self._reader, self.max_frame)) is not None:
                self._apply(self._session.receive(frame))
        except Exception as exc:
            return exc
        return None

    async def _reconnect(self) -> bool:
        """Connects again, backing off, and restores the session; False if closed or given up meanwhile."""
        backoff = Backoff(self._policy.give_up_after)
        last_error: Optional[Exception] = None
        while (wait := backoff.next_wait()) is not None:
            try:
                await asyncio.wait_for(self._closing.wait(), wait)
                break
            except asyncio.TimeoutError:
                pass
            try:
                reader, writer, welcome = await _open(self.address, self.name, self._policy.connect_timeout)
            except Exception as exc:  # whatever went wrong, this attempt failed and the next may work
                last_error = exc
                continue
            return await self._resume(reader, writer, welcome, backoff.waited())
        if self._closing.is_set():
            self._apply(self._session.connection_lost(None, reconnect=False))
        else:
            self._apply(self._session.give_up(backoff.waited(), last_error))
        return False

    async def _resume(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, welcome: Welcome, waited: float
    ) -> bool:
        """Makes a new connection the client's, first sending it the registrations and subscriptions."""
        async with self._write_lock:
            try:
                replay = self._session.reconnected(welcome.max_frame)
            except ConnectionLost:
                writer.close()
                self._apply(self._session.connection_lost(None, reconnect=False))
                return False
            self._reader, self._writer = reader, writer
            self.conn_id, self.max_frame, self.broker_version = welcome
            try:
                writer.write(b"".join(replay))
                await writer.drain()
            except OSError:
                pass  # reading from it fails too, and the client reconnects again
        if self._closing.is_set():
            writer.close()  # close() ran while this connection was being set up and may have missed it
            return True
        log.warning(
            "reconnected to the broker at %s after %.1f s; served objects and subscriptions restored",
            self.address,
            waited,
        )
        return True

    def _apply(self, outcomes: Iterable[Outcome[asyncio.Future[Any], Subscription]]) -> None:
        """Carries out what the session says."""
        for outcome in outcomes:
            if isinstance(outcome, Answer):
                _settle(outcome.waiter, outcome.result, outcome.error)
            elif isinstance(outcome, Deliver):
                outcome.subscription._deliver(outcome.event)
            elif isinstance(outcome, End):
                outcome.subscription._end(outcome.error)
            elif isinstance(outcome, Serve):
                self._start_handler(outcome)
            elif isinstance(outcome, Abandon):
                handler = self._handlers.get(outcome.context)
                if handler is not None:
                    handler.cancel()
            else:
                self._spawn(self._write_quietly(outcome.data, outcome.epoch))

    def _start_handler(self, call: Serve) -> None:
        """Runs a served method as a task, or answers `overloaded` if `workers` are running already."""
        if len(self._handlers) >= self._pool.size:
            self._spawn(self._refuse(call))
            return
        task = self._loop.create_task(self._serve_call(call))
        self._handlers[call.context] = task
        task.add_done_callback(lambda _: self._handlers.pop(call.context, None))

    async def _serve_call(self, call: Serve) -> None:
        """Runs a served method (a plain function on a pool thread) and sends its answer, unless the caller gave up.

        The call's place among the `workers` is freed before the answer is sent.
        """
        try:
            if inspect.iscoroutinefunction(call.fn):
                result = await call.fn(*call.args, **call.kwargs)
            else:
                result = await self._in_thread(call)
                if inspect.isawaitable(result):
                    result = await result
        except Exception as exc:
            answer = self._session.answered(call, error=exc)
        else:
            answer = self._session.answered(call, result)
        self._handlers.pop(call.context, None)
        if answer is not None:
            await self._write_quietly(answer, call.epoch)

    async def _in_thread(self, call: Serve) -> Any:
        """The result of a plain served function, run on a daemon thread of the pool."""
        future: asyncio.Future[Any] = self._loop.create_future()

        def work() -> Tuple[Any, Optional[BaseException]]:
            try:
                return call.fn(*call.args, **call.kwargs), None
            except Exception as exc:
                return None, exc

        def deliver(outcome: Tuple[Any, Optional[BaseException]]) -> None:
            try:
                self._loop.call_soon_threadsafe(_settle, future, *outcome)
            except RuntimeError:
                pass  # the event loop is closed: nobody waits for this answer

        if not self._pool.try_run(work, deliver):
            raise self._busy()
        return await future

    def _busy(self) -> Overloaded:
        size = self._pool.size
        return Overloaded(f"this worker is already running {size} calls, its limit (workers={size}); try again later")

    async def _refuse(self, call: Serve) -> None:
        """Answers `overloaded` to a call that found `workers` handlers running."""
        answer = self._session.answered(call, error=self._busy())
        if answer is not None:
            await self._write_quietly(answer, call.epoch)


def _settle(future: asyncio.Future[Any], result: Any, error: Optional[BaseException]) -> None:
    """Completes `future` with `error` if it is set, else `result`, unless its caller gave up already."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def _run_callback(sub: Subscription, callback: Callable[[Event], Any]) -> None:
    """Feeds every event of `sub` to `callback` (awaiting what it returns) until the subscription ends
    (the client reports a lost broker)."""
    try:
        async for event in sub:
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("the callback of subscription %r raised", sub.pattern)
    except ConnectionLost:
        pass
