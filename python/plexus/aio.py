"""The asyncio client: the operations of `plexus.Client` as coroutines, on one event loop."""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
from dataclasses import replace
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Set, Tuple, TypeVar, Union

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
from ._transport import Address, open_stream, resolve_address
from .errors import BadFrame, ConnectionLost, FrameTooLarge, Internal, NameTaken, NoSuchObject, Timeout
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
        writer.write(encode(hello_frame(client_name)))
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
    if frame is None or frame.kind != Kind.WELCOME:
        writer.close()
        if frame is None:
            raise ConnectionLost(f"the broker at {address} closed the connection during the handshake")
        if frame.kind == Kind.ERROR:
            raise error_from_frame(frame)
        raise BadFrame(f"expected welcome from {address}, got {frame.kind.name.lower()}")
    return Client(reader, writer, address, client_name, frame)


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
        welcome: Frame,
    ) -> None:
        self.address = address
        self.name = name
        self.conn_id = welcome.id
        self.max_frame = welcome.aux or DEFAULT_MAX_FRAME
        self.broker_version = welcome.string(0)
        self._loop = asyncio.get_running_loop()
        self._reader = reader
        self._writer = writer
        self._write_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._pending: Dict[int, asyncio.Future[Frame]] = {}
        self._subs: Dict[int, Subscription] = {}
        self._objects: Dict[str, Methods] = {}
        self._serving: Dict[int, bool] = {}
        self._tasks: Set[asyncio.Task[Any]] = set()
        self._closed = False
        self._closing = False
        self._reason = ""
        self._done = asyncio.Event()
        self._read_task = self._loop.create_task(self._read_loop())

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<plexus.aio.Client {self.name!r} conn {self.conn_id} at {self.address} {state}>"

    # Requests -------------------------------------------------------------------------------

    async def call(
        self, obj: str, method: str, params: Any = None, timeout: Optional[float] = DEFAULT_TIMEOUT
    ) -> Any:
        """Calls `obj.method(params)` and returns the decoded JSON result (see `plexus.Client.call`)."""
        frame = call_frame(0, obj, method, params, timeout)
        rid, future = self._begin()
        answer = await self._finish(rid, future, replace(frame, id=rid), local_wait(timeout), f"{obj}.{method}", True)
        return loads(answer.payload)

    async def publish(self, topic: str, payload: Any = None, *, ack: bool = False) -> Optional[Dict[str, int]]:
        """Publishes `payload` (as JSON) on `topic`; with `ack`, returns the broker's delivery counts."""
        frame = publish_frame(0, topic, payload, ack)
        if not ack:
            await self._send(frame)
            return None
        rid, future = self._begin()
        answer = await self._finish(rid, future, replace(frame, id=rid), REQUEST_TIMEOUT, f"publish on {topic}")
        result: Dict[str, int] = loads(answer.payload)
        return result

    async def subscribe(
        self, pattern: str, callback: Optional[Callable[[Event], Any]] = None
    ) -> Subscription:
        """Subscribes to topics matching `pattern`.

        Returns a `Subscription` to `async for` over. With `callback` (a function or a coroutine
        function), each event is passed to it from a task of its own instead.
        """
        frame = subscribe_frame(0, pattern)
        rid, future = self._begin()
        sub = Subscription(rid, pattern, self._unsubscribe)
        self._subs[rid] = sub
        try:
            await self._finish(rid, future, replace(frame, id=rid), REQUEST_TIMEOUT, f"subscribe {pattern}")
        except BaseException:
            self._subs.pop(rid, None)
            sub._end()
            raise
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
        validate_name(name)
        methods = methods_of(target)
        if name in self._objects:
            raise NameTaken(f"this client already serves {name!r}")
        self._objects[name] = methods
        await self._claim(name, shared)

    def method(self, obj: str, name: Optional[str] = None, *, shared: bool = False) -> Callable[[F], F]:
        """Decorator: serve the function as `obj.name` (default: the function's name).

        The first method of an object registers the object's name in a background task; a
        failure to register is logged. Use `serve` to get registration errors raised.
        """
        validate_name(obj)

        def decorate(fn: F) -> F:
            method_name = name or fn.__name__
            table = self._objects.get(obj)
            if table is not None:
                table[method_name] = fn
            else:
                self._objects[obj] = {method_name: fn}
            self._spawn(self._claim_logged(obj, shared))
            return fn

        return decorate

    async def unserve(self, name: str) -> None:
        """Unregisters `name`; calls to it fail with `NoSuchObject` from then on."""
        self._objects.pop(name, None)
        await self._request(unregister_frame(0, name), f"unregister {name}")

    async def run_forever(self) -> None:
        """Waits until the connection ends (the broker stops, or `close()` is called)."""
        await self._done.wait()

    # Lifetime -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the connection has ended."""
        return self._closed

    async def close(self) -> None:
        """Closes the connection: pending calls fail with `ConnectionLost`, subscriptions end."""
        self._closing = True
        self._closed = True
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

    def _begin(self) -> Tuple[int, asyncio.Future[Frame]]:
        """A fresh request id and the future its answer will complete."""
        if self._closed:
            raise ConnectionLost(self._reason or "the client is closed")
        rid = next(self._ids)
        future: asyncio.Future[Frame] = self._loop.create_future()
        self._pending[rid] = future
        return rid, future

    async def _finish(
        self,
        rid: int,
        future: asyncio.Future[Frame],
        frame: Frame,
        wait: Optional[float],
        what: str,
        cancel: bool = False,
    ) -> Frame:
        """Sends request `frame` and waits for its answer; an `error` answer is raised."""
        try:
            await self._send(frame)
            answer = await asyncio.wait_for(future, wait)
        except asyncio.TimeoutError:
            if cancel:
                await self._send_quietly(Frame(Kind.CANCEL, rid))
            raise Timeout(f"no answer to {what} within {wait} s") from None
        except asyncio.CancelledError:
            if cancel and not self._closed:
                self._spawn(self._send_quietly(Frame(Kind.CANCEL, rid)))
            raise
        finally:
            self._pending.pop(rid, None)
        if answer.kind == Kind.ERROR:
            raise error_from_frame(answer)
        return answer

    async def _request(self, frame: Frame, what: str) -> Frame:
        """Sends request `frame` under a fresh id and waits up to `REQUEST_TIMEOUT` for its answer."""
        rid, future = self._begin()
        return await self._finish(rid, future, replace(frame, id=rid), REQUEST_TIMEOUT, what)

    async def _claim(self, name: str, shared: bool) -> None:
        """Registers `name`, whose method table is already installed; uninstalls it on failure."""
        try:
            declared = list(self._objects.get(name, {}))
            await self._request(register_frame(0, name, shared, declared), f"register {name}")
        except BaseException:
            self._objects.pop(name, None)
            raise

    async def _claim_logged(self, name: str, shared: bool) -> None:
        try:
            await self._claim(name, shared)
        except Exception:
            log.exception("registering %r failed", name)

    async def _send(self, frame: Frame) -> None:
        """Writes one frame; raises `FrameTooLarge` over the broker's limit, `ConnectionLost` if closed."""
        data = encode(frame)
        if len(data) > self.max_frame:
            raise FrameTooLarge(f"frame of {len(data)} bytes exceeds the broker's limit of {self.max_frame} bytes")
        async with self._write_lock:
            if self._closed:
                raise ConnectionLost(self._reason or "the client is closed")
            try:
                self._writer.write(data)
                await self._writer.drain()
            except OSError as exc:
                raise ConnectionLost(f"writing to the broker at {self.address} failed: {exc}") from exc

    async def _send_quietly(self, frame: Frame) -> None:
        """Writes one frame when a failure needs no report (the connection is ending anyway)."""
        try:
            await self._send(frame)
        except ConnectionLost:
            pass

    async def _unsubscribe(self, sub_id: int) -> None:
        self._subs.pop(sub_id, None)
        await self._send_quietly(Frame(Kind.UNSUBSCRIBE, sub_id))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        """Runs `coro` as a task the client keeps until it ends (and cancels on close)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_loop(self) -> None:
        reason = f"the broker at {self.address} closed the connection"
        try:
            while True:
                frame = await read_frame(self._reader, self.max_frame)
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
            future = self._pending.get(frame.id)
            if future is not None and not future.done():
                future.set_result(frame)
            elif future is None and kind == Kind.ERROR and frame.id == 0:
                log.warning("the broker reported an error: %s", error_from_frame(frame))
        elif kind == Kind.EVENT:
            sub = self._subs.get(frame.id)
            if sub is not None:
                sub._deliver(Event(frame.string(0), frame.payload, frame.aux))
        elif kind == Kind.CALL:
            self._on_call(frame)
        elif kind == Kind.CANCEL:
            if frame.id in self._serving:
                self._serving[frame.id] = True
        else:
            log.warning("ignoring an unexpected %s frame from the broker", kind.name.lower())

    def _on_call(self, frame: Frame) -> None:
        obj = frame.string(0)
        methods = self._objects.get(obj)
        if methods is None:
            error = NoSuchObject(f"this connection does not serve '{obj}'")
            self._spawn(self._send_quietly(error_frame(frame.id, error)))
            return
        self._serving[frame.id] = False
        self._spawn(self._serve_call(frame, methods))

    async def _serve_call(self, frame: Frame, methods: Methods) -> None:
        try:
            fn, (args, kwargs) = prepare(methods, frame)
            if inspect.iscoroutinefunction(fn):
                result = await fn(*args, **kwargs)
            else:
                result = await self._loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))
                if inspect.isawaitable(result):
                    result = await result
            answer = reply_frame(frame.id, result)
        except Exception as exc:
            answer = error_frame(frame.id, exc)
        if self._serving.pop(frame.id, False):
            return
        try:
            await self._send_quietly(answer)
        except FrameTooLarge as exc:
            await self._send_quietly(error_frame(frame.id, Internal(f"the answer is too large: {exc}")))

    def _end(self, reason: str) -> None:
        """The connection is over: fail pending requests and end subscriptions."""
        self._closed = True
        self._reason = "the client was closed" if self._closing else reason
        if not self._closing:
            log.warning("%s", reason)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionLost(self._reason))
        for sub in list(self._subs.values()):
            sub._end()
        self._subs.clear()
        self._writer.close()
        self._done.set()


async def _run_callback(sub: Subscription, callback: Callable[[Event], Any]) -> None:
    """Feeds every event of `sub` to `callback` (awaiting what it returns) until the subscription ends."""
    async for event in sub:
        try:
            result = callback(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("the callback of subscription %r raised", sub.pattern)
