"""Daemon threads that run served methods: at most a fixed number at once, refusing more instead of queueing."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Optional, Tuple

Job = Tuple[Callable[[], Any], Callable[[Any], None]]
"""The work to run, and what to do with its result once its place in the pool is free again."""


class WorkerPool:
    """Up to `size` daemon threads, started as they are needed, each running one job at a time.

    A job beyond `size` running ones is refused rather than queued, so a caller hears at once that
    the worker is busy instead of timing out behind stuck handlers. A job's place is freed before
    its result is handed on, so a caller that got an answer never finds the place still taken.
    The threads are daemon threads: a handler that never returns does not keep the process alive.
    """

    def __init__(self, size: int, name: str) -> None:
        if size < 1:
            raise ValueError(f"workers must be at least 1, not {size}")
        self.size = size
        self._name = name
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Optional[Job]] = queue.SimpleQueue()
        self._busy = 0
        self._threads = 0
        self._started = 0
        self._stopped = False

    def try_run(self, work: Callable[[], Any], then: Callable[[Any], None]) -> bool:
        """Runs `work()` on a pool thread, frees its place, then calls `then` with its result.

        False, and nothing runs, if `size` jobs are running already. `work` must not raise.
        """
        with self._lock:
            if self._stopped or self._busy >= self.size:
                return False
            self._busy += 1
            start = self._busy > self._threads
            if start:
                self._threads += 1
                self._started += 1
                number = self._started
        if start:
            threading.Thread(target=self._work, name=f"{self._name}-{number}", daemon=True).start()
        self._jobs.put((work, then))
        return True

    def shutdown(self) -> None:
        """Refuses new jobs and lets the threads end once idle; waits for none of them."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            threads = self._threads
        for _ in range(threads):
            self._jobs.put(None)

    def _work(self) -> None:
        """Runs jobs until told to stop. There is a thread for every job taken, so none waits in the queue."""
        try:
            while (job := self._jobs.get()) is not None:
                work, then = job
                try:
                    result = work()
                finally:
                    with self._lock:
                        self._busy -= 1
                then(result)
        finally:
            with self._lock:
                self._threads -= 1
