"""Served methods under load: cancel signals for calls that timed out, a full pool answering `overloaded`, closing with stuck handlers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, List

import pytest

import plexus
import plexus.aio
from conftest import WORKERS, Broker, wait_until

WAIT = 20.0
"""A hang guard: nothing here should take nearly this long."""
STUCK_CALLS = 20
"""More timed-out calls than the blocking worker's 16 threads."""
SHORT = 0.05
"""The timeout of calls meant to time out."""


def run(coro: Awaitable[Any]) -> Any:
    """Runs `coro` on a new event loop, failing it after 60 s."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 60)

    return asyncio.run(bounded())


def test_timed_out_calls_cancel_their_handlers_and_free_the_workers(broker: Broker) -> None:
    saw_cancel: List[bool] = []

    def stuck(ctx: plexus.CallContext) -> None:
        saw_cancel.append(ctx.wait(60))

    worker = broker.client("worker")
    worker.serve("svc", {"stuck": stuck, "fast": lambda: "fast"})
    caller = broker.client("caller")
    for _ in range(STUCK_CALLS):
        with pytest.raises(plexus.Timeout):
            caller.call("svc", "stuck", timeout=SHORT)
    assert caller.call("svc", "fast", timeout=WAIT) == "fast"
    wait_until(lambda: len(saw_cancel) == STUCK_CALLS, WAIT, "every stuck handler to return")
    assert all(saw_cancel), "each handler returned because its caller gave up"
    assert caller.stats()["late_replies"] == 0


def test_a_full_pool_answers_overloaded_at_once(broker: Broker) -> None:
    release = threading.Event()
    running = threading.Semaphore(0)

    def block() -> str:
        running.release()
        release.wait(WAIT)
        return "done"

    worker = broker.client("worker", workers=2)
    worker.serve("svc", {"block": block, "fast": lambda: "fast"})
    caller = broker.client("caller")
    with ThreadPoolExecutor(2) as pool:
        blocked = [pool.submit(caller.call, "svc", "block", None, WAIT) for _ in range(2)]
        try:
            for _ in range(2):
                assert running.acquire(timeout=WAIT)
            with pytest.raises(plexus.Overloaded, match=r"already running 2 calls.*workers=2"):
                caller.call("svc", "fast", timeout=WAIT)
        finally:
            release.set()
        assert [f.result(timeout=WAIT) for f in blocked] == ["done", "done"]
    assert caller.call("svc", "fast", timeout=WAIT) == "fast"


@pytest.mark.parametrize("driver", ["sync", "aio"])
def test_close_with_a_stuck_handler_lets_the_process_exit(broker: Broker, driver: str) -> None:
    done = subprocess.run(
        [sys.executable, str(WORKERS / "stuck_close.py"), driver],
        env=broker.env(),
        capture_output=True,
        timeout=WAIT,
    )
    assert (done.returncode, done.stdout) == (0, b"closed\n"), done.stderr.decode()


def test_asyncio_timed_out_calls_cancel_their_handlers(broker: Broker) -> None:
    async def main() -> None:
        cancelled: List[str] = []
        saw_cancel: List[bool] = []

        async def stuck() -> None:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append("task")
                raise

        def stuck_in_thread(ctx: plexus.CallContext) -> None:
            saw_cancel.append(ctx.wait(60))

        async with await plexus.aio.connect(broker.bus, "aio-worker", workers=4) as worker:

            async def fast() -> str:
                return "fast"

            await worker.serve("svc", {"stuck": stuck, "stuck_in_thread": stuck_in_thread, "fast": fast})
            async with await plexus.aio.connect(broker.bus, "aio-caller") as caller:
                for method in ["stuck", "stuck_in_thread"] * (STUCK_CALLS // 2):
                    with pytest.raises(plexus.Timeout):
                        await caller.call("svc", method, timeout=SHORT)
                assert await caller.call("svc", "fast", timeout=WAIT) == "fast"
                while len(cancelled) + len(saw_cancel) < STUCK_CALLS:
                    await asyncio.sleep(0.02)
                assert len(cancelled) == STUCK_CALLS // 2 and saw_cancel == [True] * (STUCK_CALLS // 2)

    run(main())


def test_asyncio_handlers_beyond_the_bound_are_answered_overloaded(broker: Broker) -> None:
    async def main() -> None:
        release = asyncio.Event()
        running: List[int] = []

        async def block() -> str:
            running.append(1)
            await release.wait()
            return "done"

        async with await plexus.aio.connect(broker.bus, "aio-worker", workers=2) as worker:
            await worker.serve("svc", {"block": block, "fast": lambda: "fast"})
            async with await plexus.aio.connect(broker.bus, "aio-caller") as caller:
                blocked = [asyncio.ensure_future(caller.call("svc", "block", timeout=WAIT)) for _ in range(2)]
                while len(running) < 2:
                    await asyncio.sleep(0.01)
                with pytest.raises(plexus.Overloaded, match="workers=2"):
                    await caller.call("svc", "fast", timeout=WAIT)
                release.set()
                assert await asyncio.gather(*blocked) == ["done", "done"]
                assert await caller.call("svc", "fast", timeout=WAIT) == "fast"

    run(main())
