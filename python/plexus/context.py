"""What a served method knows about the call it answers: the time it has and whether the caller gave up."""

from __future__ import annotations

import threading
from typing import Optional


class CallContext:
    """The context of one incoming call; a served method gets it by declaring a parameter named `ctx`.

    The caller gives up when its timeout passes, when it cancels, or when it disconnects; the
    answer is dropped then, so a long method should check `is_cancelled()` (or wait with `wait`)
    and stop early. An asyncio handler is also cancelled as a task.
    """

    __slots__ = ("object", "method", "timeout", "_cancelled")

    def __init__(self, obj: str, method: str, timeout: float) -> None:
        self.object = obj
        """The object called."""
        self.method = method
        """The method called."""
        self.timeout = timeout
        """Seconds the call had left when it reached this worker."""
        self._cancelled = threading.Event()

    def __repr__(self) -> str:
        state = " cancelled" if self.is_cancelled() else ""
        return f"<plexus.CallContext {self.object}.{self.method} timeout {self.timeout} s{state}>"

    def is_cancelled(self) -> bool:
        """Whether the caller gave up (timed out, cancelled, disconnected, or this client lost the broker)."""
        return self._cancelled.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the caller gives up or `timeout` seconds pass; True if the caller gave up."""
        return self._cancelled.wait(timeout)

    def _cancel(self) -> None:
        self._cancelled.set()
