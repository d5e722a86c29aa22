"""Events and the blocking subscription that queues them."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from ._dispatch import loads
from .errors import ConnectionLost, Timeout


@dataclass(frozen=True)
class Event:
    """One published event as a subscription received it."""

    topic: str
    """The topic it was published on."""
    raw: bytes
    """The event body exactly as published."""
    dropped: int = 0
    """How many events this subscription lost (its queue in the broker was full) before this one."""

    @property
    def data(self) -> Any:
        """The body decoded as JSON (`None` for an empty body)."""
        return loads(self.raw)


_CLOSED = object()


class Subscription:
    """The events of one `subscribe` pattern, in order; iterate it, or `get` with a timeout.

    It lasts across reconnects (events published while the client was disconnected are lost).
    If the client loses the broker for good, reading past the last event raises `ConnectionLost`.
    """

    def __init__(self, sub_id: int, pattern: str, unsubscribe: Callable[[int], None]) -> None:
        self.id = sub_id
        self.pattern = pattern
        self._unsubscribe = unsubscribe
        self._queue: queue.Queue[Any] = queue.Queue()
        self._closed = threading.Event()
        self._error: Optional[ConnectionLost] = None
        self._lock = threading.Lock()

    def _deliver(self, event: Event) -> None:
        with self._lock:
            if not self._closed.is_set():
                self._queue.put(event)

    def _end(self, error: Optional[ConnectionLost] = None) -> bool:
        """Marks the subscription closed (by `error` if given) and wakes its readers; False if it already was."""
        with self._lock:
            if self._closed.is_set():
                return False
            self._error = error
            self._closed.set()
            self._queue.put(_CLOSED)
            return True

    @property
    def closed(self) -> bool:
        """Whether the subscription was closed (by `close()` or because the connection ended)."""
        return self._closed.is_set()

    def get(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event; `None` once the subscription is closed. Raises `Timeout` after `timeout` s,
        and `ConnectionLost` once the client lost the broker for good."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise Timeout(f"no event on {self.pattern!r} within {timeout} s") from None
        if isinstance(item, Event):
            return item
        self._queue.put(_CLOSED)
        if self._error is not None:
            raise ConnectionLost(self._error.message)
        return None

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        event = self.get()
        if event is None:
            raise StopIteration
        return event

    def close(self) -> None:
        """Ends the subscription: the broker stops sending, iteration stops."""
        if self._end():
            self._unsubscribe(self.id)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
