"""The asyncio client against the real broker (each test runs its own event loop)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Dict, List

import pytest

import plexus
import plexus.aio
from conftest import Broker

WAIT = 10.0


def run(coro: Awaitable[Any]) -> Any:
    """Runs `coro` on a new event loop, failing it after 60 s."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 60)

    return asyncio.run(bounded())


def test_round_trip_with_async_and_sync_handlers(broker: Broker) -> None:
    async def main() -> None:
        async with await plexus.aio.connect(broker.bus, "aio-worker") as worker:

            async def add(a: int, b: int) -> Dict[str, int]:
                await asyncio.sleep(0)
                return {"sum": a + b}

            await worker.serve("math", {"add": add, "mul": lambda a, b: a * b})
            async with await plexus.aio.connect(broker.bus, "aio-caller") as caller:
                assert await caller.call("math", "add", {"a": 10, "b": 32}) == {"sum": 42}
                assert await caller.call("math", "mul", [6, 7]) == 42
                results = await asyncio.gather(*(caller.call("math", "add", [i, 1]) for i in range(50)))
                assert results == [{"sum": i + 1} for i in range(50)]
                with pytest.raises(plexus.NoSuchObject):
                    await caller.call("nobody", "x")
                with pytest.raises(plexus.NoSuchMethod):
                    await caller.call("math", "div", [1, 2])
                assert (await caller.ping())["pong"] is True

    run(main())


def test_sync_client_calls_async_worker(broker: Broker) -> None:
    ready = threading.Event()
    stop: List[asyncio.Event] = []

    async def serve() -> None:
        async with await plexus.aio.connect(broker.bus, "aio-worker") as worker:

            @worker.method("math")
            async def add(a: int, b: int) -> Dict[str, int]:
                return {"sum": a + b}

            await worker.wait_for("math", timeout=WAIT)
            stop.append(asyncio.Event())
            ready.set()
            await asyncio.wait_for(stop[0].wait(), 30)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(WAIT)
        assert broker.client().call("math", "add", {"a": 10, "b": 32}) == {"sum": 42}
    finally:
        if stop:
            loop.call_soon_threadsafe(stop[0].set)
        thread.join(WAIT)
        loop.close()


def test_errors_timeouts_and_wait_for(broker: Broker) -> None:
    async def main() -> None:
        async with await plexus.aio.connect(broker.bus) as bus:

            async def slow() -> None:
                await asyncio.sleep(5)

            def fail() -> None:
                raise plexus.Overloaded("busy", {"retry_ms": 10})

            with pytest.raises(plexus.Timeout) as missing:
                await bus.wait_for(["late"], timeout=0.2)
            assert missing.value.data == {"missing": ["late"]}
            waiter = asyncio.ensure_future(bus.wait_for(["late"], timeout=WAIT))
            await bus.serve("late", {"slow": slow, "fail": fail})
            assert await waiter == {"names": ["late"]}
            with pytest.raises(plexus.Timeout):
                await bus.call("late", "slow", timeout=0.2)
            with pytest.raises(plexus.Overloaded) as refused:
                await bus.call("late", "fail")
            assert refused.value.data == {"retry_ms": 10}

    run(main())


def test_subscriptions(broker: Broker) -> None:
    async def main() -> None:
        async with await plexus.aio.connect(broker.bus) as bus:
            sub = await bus.subscribe("sensor.*")
            seen: "asyncio.Queue[plexus.Event]" = asyncio.Queue()

            async def on_event(event: plexus.Event) -> None:
                await seen.put(event)

            await bus.subscribe("sensor.>", callback=on_event)
            assert await bus.publish("sensor.temp", 25.6, ack=True) == {"delivered": 2, "dropped": 0}
            await bus.publish("sensor.room.1", {"lux": 3})
            await bus.publish("sensor.end")
            got = []
            async for event in sub:
                got.append((event.topic, event.data))
                if len(got) == 2:
                    break
            assert got == [("sensor.temp", 25.6), ("sensor.end", None)]
            deep = [await asyncio.wait_for(seen.get(), WAIT) for _ in range(3)]
            assert [e.topic for e in deep] == ["sensor.temp", "sensor.room.1", "sensor.end"]
            await sub.close()
            assert await sub.get(timeout=WAIT) is None

    run(main())
