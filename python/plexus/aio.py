"""The asyncio client: drives a `Session` with asyncio streams; the operations of `plexus.Client` as coroutines."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Set, TypeVar, Union

from ._codec import DEFAULT_MAX_FRAME, HEADER_LEN, Frame, decode_body, decode_header
from ._names import validate_name
from ._requests import BROKER_OBJECT, CONNECT_TIMEOUT, DEFAULT_TIMEOUT, GRACE, default_client_name, wait_for_params
from ._session import Answer, Deliver, End, Outcome, Request, Serve, Session, Welcome, check_welcome, hello
from ._transport import Address, open_stream, resolve_address
from .errors import ConnectionLost, Error, Timeout
from .events import Event

__all__ = ["Client", "Subscription", "connect"]

log = logging.getLogger("plexus")

F = TypeVar("F", bound=Callable[..., Any])

_CLOSED = object()


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
    bus: Optional[str] = None, name: Optional[str] = None, *, connect_timeout: float = CONNECT_TIMEOUT
) -> Client:
    """Connects to the broker and says hello; the arguments are those of `plexus.connect`."""
    address = resolve_address(bus)
    client_name = name or default_client_name()
    reader, writer = await open_stream(address, connect_timeout)
    try:
        writer.write(hello(client_name))
        await writer.drain()
        frame = await asyncio.wait_for(read_frame(reader, DEFAULT_MAX_FRAME), connect_timeout)
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
    return Client(reader, writer, address, client_name, welcome)


class Subscription:
    """The events of one `subscribe` pattern: `async for` over it, or `await get(timeout)`."""

    def __init__(self, sub_id: int, pattern: str, unsubscribe: Callable[[int], Awaitable[None]]) -> None:
        self.id = sub_id
        self.pattern = pattern
        self._unsubscribe = unsubscribe
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._closed = False

    def _deliver(self, event: Event) -> None:
        if not self._closed:
            self._queue.put_nowait(event)

    def _end(self) -> bool:
        """Marks the subscription closed and wakes its readers; False if it already was."""
        if self._closed:
            return False
        self._closed = True
        self._queue.put_nowait(_CLOSED)
        return True

    @property
    def closed(self) -> bool:
        """Whether the subscription was closed (by `close()` or because the connection ended)."""
        return self._closed

    async def get(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event; `None` once the subscription is closed. Raises `Timeout` after `timeout` s."""
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            raise Timeout(f"no event on {self.pattern!r} within {timeout} s") from None
        if isinstance(item, Event):
            return item
        self._queue.put_nowait(_CLOSED)
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
    """A connection to the broker for asyncio code. Use `await plexus.aio.connect()` to make one."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        address: Address,
        name: str,
        welcome: Welcome,
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
        self._write_lock = asyncio.Lock()
        self._tasks: Set[asyncio.Task[Any]] = set()
        self._done = asyncio.Event()
        self._read_task = self._loop.create_task(self._read_loop())

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
        self, pattern: str, callback: Optional[Callable[[Event], Any]] = None
    ) -> Subscription:
        """Subscribes to topics matching `pattern`.

        Returns a `Subscription` to `async for` over. With `callback` (a function or a coroutine
        function), each event is passed to it from a task of its own instead.
        """
        request, sub = self._session.subscribe(pattern, lambda sub_id: Subscription(sub_id, pattern, self._unsubscribe))
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

    async def serve(self, name: str, target: Any, shared: bool = False) -> None:
        """Registers `name` and answers its calls with `target`'s methods.

        Coroutine functions run on the event loop; plain functions run in the loop's default
        executor, so a blocking method does not stall the loop. See `plexus.Client.serve`.
        """
        await self._finish(self._session.serve(name, target, shared))

    def method(self, obj: str, name: Optional[str] = None, *, shared: bool = False) -> Callable[[F], F]:
        """Decorator: serve the function as `obj.name` (default: the function's name).

        The first method of an object registers the object's name in a background task; a
        failure to register is logged. Use `serve` to get registration errors raised.
        """
        validate_name(obj)

        def decorate(fn: F) -> F:
            try:
                request = self._session.add_method(obj, name or fn.__name__, fn, shared)
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
        """Waits until the connection ends (the broker stops, or `close()` is called)."""
        await self._done.wait()

    # Lifetime -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the connection has ended."""
        return self._session.closed

    async def close(self) -> None:
        """Closes the connection: pending calls fail with `ConnectionLost`, subscriptions end."""
        self._session.close()
        self._writer.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._read_task), 5)
        except asyncio.TimeoutError:
            self._read_task.cancel()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # Internals ------------------------------------------------------------------------------

    async def _finish(self, request: Request[asyncio.Future[Any]]) -> Any:
        """Sends `request` and waits for its answer: returns the result, raises an error answer."""
        ok = False
        try:
            await self._write(request.data)
            result = await asyncio.wait_for(request.waiter, request.wait)
            ok = True
            return result
        except asyncio.TimeoutError:
            if request.cancel is not None:
                await self._write_quietly(request.cancel)
            raise request.timed_out() from None
        except asyncio.CancelledError:
            if request.cancel is not None and not self.closed:
                self._spawn(self._write_quietly(request.cancel))
            raise
        finally:
            self._apply(self._session.settle(request, ok))

    async def _register_logged(self, request: Request[asyncio.Future[Any]], name: str) -> None:
        """Finishes a registration from the `method` decorator, logging a failure (nobody waits for it)."""
        try:
            await self._finish(request)
        except Exception:
            log.exception("registering %r failed", name)

    async def _write(self, data: bytes) -> None:
        """Writes bytes the session made; raises `ConnectionLost` if the connection is closed."""
        async with self._write_lock:
            self._session.check_open()
            try:
                self._writer.write(data)
                await self._writer.drain()
            except OSError as exc:
                raise ConnectionLost(f"writing to the broker at {self.address} failed: {exc}") from exc

    async def _write_quietly(self, data: bytes) -> None:
        """Writes bytes when a failure needs no report (the connection is ending anyway)."""
        try:
            await self._write(data)
        except ConnectionLost:
            pass

    async def _unsubscribe(self, sub_id: int) -> None:
        await self._write_quietly(self._session.unsubscribe(sub_id))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        """Runs `coro` as a task the client keeps until it ends (and cancels on close)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_loop(self) -> None:
        """Hands the broker's frames to the session until the connection ends, then winds the client down."""
        error: Optional[Exception] = None
        try:
            while (frame := await read_frame(self._reader, self.max_frame)) is not None:
                self._apply(self._session.receive(frame))
        except Exception as exc:
            error = exc
        finally:
            self._apply(self._session.connection_lost(error))
            self._writer.close()
            self._done.set()

    def _apply(self, outcomes: Iterable[Outcome[asyncio.Future[Any], Subscription]]) -> None:
        """Carries out what the session says."""
        for outcome in outcomes:
            if isinstance(outcome, Answer):
                _settle(outcome.waiter, outcome.result, outcome.error)
            elif isinstance(outcome, Deliver):
                outcome.subscription._deliver(outcome.event)
            elif isinstance(outcome, End):
                outcome.subscription._end()
            elif isinstance(outcome, Serve):
                self._spawn(self._serve_call(outcome))
            else:
                self._spawn(self._write_quietly(outcome.data))

    async def _serve_call(self, call: Serve) -> None:
        try:
            if inspect.iscoroutinefunction(call.fn):
                result = await call.fn(*call.args, **call.kwargs)
            else:
                result = await self._loop.run_in_executor(None, functools.partial(call.fn, *call.args, **call.kwargs))
                if inspect.isawaitable(result):
                    result = await result
        except Exception as exc:
            answer = self._session.answered(call.id, error=exc)
        else:
            answer = self._session.answered(call.id, result)
        if answer is not None:
            await self._write_quietly(answer)


def _settle(future: asyncio.Future[Any], result: Any, error: Optional[BaseException]) -> None:
    """Completes `future` with `error` if it is set, else `result`, unless its caller gave up already."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def _run_callback(sub: Subscription, callback: Callable[[Event], Any]) -> None:
    """Feeds every event of `sub` to `callback` (awaiting what it returns) until the subscription ends."""
    async for event in sub:
        try:
            result = callback(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("the callback of subscription %r raised", sub.pattern)
