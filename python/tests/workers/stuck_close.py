"""Closes a worker whose served methods never return, then ends: `stuck_close.py sync` or `stuck_close.py aio`.

Each method is called once with a short timeout first. The program prints "closed" after close()
returns; the test checks that the process then exits although the handlers are still stuck.
"""

from __future__ import annotations

import asyncio
import sys
import threading

import plexus
import plexus.aio

TIMEOUT = 0.2


def hang() -> None:
    """Never returns, and ignores that the caller gave up."""
    threading.Event().wait()


async def hang_async() -> None:
    """Never returns unless cancelled."""
    await asyncio.Event().wait()


def blocking() -> None:
    with plexus.connect(name="stuck-worker") as worker:
        worker.serve("stuck", {"hang": hang})
        with plexus.connect(name="stuck-caller") as caller:
            try:
                caller.call("stuck", "hang", timeout=TIMEOUT)
            except plexus.Timeout:
                pass
    print("closed", flush=True)


async def with_asyncio() -> None:
    async with await plexus.aio.connect(name="stuck-worker") as worker:
        await worker.serve("stuck", {"hang": hang, "hang_async": hang_async})
        async with await plexus.aio.connect(name="stuck-caller") as caller:
            for method in ("hang", "hang_async"):
                try:
                    await caller.call("stuck", method, timeout=TIMEOUT)
                except plexus.Timeout:
                    pass
    print("closed", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["sync"]:
        blocking()
    else:
        asyncio.run(with_asyncio())
