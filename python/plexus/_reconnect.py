"""When to reconnect after losing the broker: the options, and waits that back off with jitter until a deadline."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Optional

from ._requests import CONNECT_TIMEOUT

FIRST_WAIT = 0.05
"""Seconds before the first attempt; the wait doubles after each failed attempt."""
LONGEST_WAIT = 2.0
"""The longest wait between two attempts, in seconds."""


@dataclass(frozen=True)
class Policy:
    """Whether a client reconnects, for how long it keeps trying, and how long one attempt may take."""

    enabled: bool = True
    give_up_after: Optional[float] = None
    """Seconds after the loss to stop trying (`None`: never stop)."""
    connect_timeout: float = CONNECT_TIMEOUT

    def __post_init__(self) -> None:
        if self.give_up_after is not None and self.give_up_after < 0:
            raise ValueError(f"reconnect_timeout must be None (try forever) or at least 0, not {self.give_up_after}")


class Backoff:
    """The waits before the attempts to reconnect after one loss.

    The first is about 50 ms and each doubles up to 2 s; each is shortened by up to half at random,
    so that clients that lost the same broker do not all come back at the same instant.
    """

    def __init__(
        self,
        give_up_after: Optional[float],
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._clock = clock
        self._rand = rand
        self._start = clock()
        self._deadline = None if give_up_after is None else self._start + give_up_after
        self._delay = FIRST_WAIT

    def next_wait(self) -> Optional[float]:
        """Seconds to wait before the next attempt; `None` once the deadline has passed (give up)."""
        wait = self._delay * (1.0 - self._rand() / 2)
        self._delay = min(self._delay * 2, LONGEST_WAIT)
        if self._deadline is None:
            return wait
        left = self._deadline - self._clock()
        if left <= 0:
            return None
        return min(wait, left)

    def waited(self) -> float:
        """Seconds since the connection was lost."""
        return self._clock() - self._start
