"""Losing the broker: reconnecting after a restart (blocking and asyncio), and ending with an error when not."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from typing import Any, Awaitable, Callable, List, Optional

import pytest

import plexus
import plexus.aio
from conftest import WORKERS, Broker, wait_until

WAIT = 20.0
"""A hang guard: nothing here should take nearly this long."""


def run(coro: Awaitable[Any]) -> Any:
    """Runs `coro` on a new event loop, failing it after 60 s."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 60)

    return asyncio.run(bounded())


def raised_by(fn: Callable[[], Any]) -> Optional[BaseException]:
    """What `fn` raises (`None` if it returns), run on a thread; fails the test if it still runs after `WAIT`."""
    outcome: List[Optional[BaseException]] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(WAIT)
    if thread.is_alive():
        pytest.fail(f"still running after {WAIT} s")
    return outcome[0]


def connected(client: plexus.Client) -> bool:
    """Whether `client` is connected to a broker (it raises `NotConnected` while it reconnects, and
    `ConnectionLost` if the ping was under way when the connection broke)."""
    try:
        client.ping()
    except plexus.TransportError:
        return False
    return True


def plexus_messages(caplog: pytest.LogCaptureFixture, text: str) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.name == "plexus" and text in r.getMessage()]


def test_a_worker_and_a_subscriber_survive_a_broker_restart(broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="plexus")
    worker = broker.client("worker")
    worker.serve("math", {"add": lambda a, b: a + b})
    subscriber = broker.client("subscriber")
    sub = subscriber.subscribe("sensor.*")
    events: List[plexus.Event] = []
    subscriber.subscribe("sensor.>", callback=events.append)

    broker.restart()
    caller = broker.client("caller")
    assert caller.wait_for("math", timeout=WAIT) == {"names": ["math"]}
    assert caller.call("math", "add", [1, 2]) == 3
    wait_until(
        lambda: caller.publish("sensor.temp", 21.5, ack=True) == {"delivered": 2, "dropped": 0},
        WAIT,
        "both subscriptions to be restored",
    )
    event = sub.get(timeout=WAIT)
    assert event is not None and (event.topic, event.data) == ("sensor.temp", 21.5)
    wait_until(lambda: len(events) >= 1, WAIT, "the callback to get the event")
    assert {e.data for e in events} == {21.5}
    assert worker.ping()["conn_id"] == worker.conn_id, "the client knows its new connection"
    wait_until(lambda: len(plexus_messages(caplog, "reconnected")) == 2, WAIT, "both clients to say they are back")
    assert len(plexus_messages(caplog, "; reconnecting")) == 2, "each client says once that it lost the broker"
    assert not worker.closed and not subscriber.closed


def test_calls_open_when_the_broker_dies_fail_at_once_and_are_not_sent_again(broker: Broker) -> None:
    started: List[int] = []
    cancelled = threading.Event()

    def hang(ctx: plexus.CallContext) -> None:
        started.append(1)
        if ctx.wait(60):
            cancelled.set()

    worker = broker.client("worker")
    worker.serve("slow", {"hang": hang})
    caller = broker.client("caller")
    call_done: List[BaseException] = []

    def open_call() -> None:
        try:
            caller.call("slow", "hang", timeout=60)
        except BaseException as exc:
            call_done.append(exc)

    thread = threading.Thread(target=open_call)
    thread.start()
    wait_until(lambda: started == [1], WAIT, "the handler to start")
    broker.stop_process(signal.SIGKILL)
    thread.join(WAIT)
    assert not thread.is_alive(), "the open call failed at once"
    (error,) = call_done
    assert isinstance(error, plexus.ConnectionLost) and "may or may not have been carried out" in str(error)
    assert cancelled.wait(WAIT), "the handler was told that nobody waits for its answer"
    with pytest.raises(plexus.NotConnected, match="nothing was sent"):
        caller.call("slow", "hang")

    broker.start_process()
    wait_until(lambda: connected(caller), WAIT, "the caller to reconnect")
    caller.wait_for("slow", timeout=WAIT)
    worker.ping()
    assert started == [1], "the call was not sent again"


def test_without_reconnect_the_client_is_done_when_the_broker_goes(broker: Broker) -> None:
    bus = broker.client("done", reconnect=False)
    sub = bus.subscribe("sensor.*")
    broker.stop_process()
    error = raised_by(bus.run_forever)
    assert isinstance(error, plexus.ConnectionLost) and "reconnect=False" in str(error)
    with pytest.raises(plexus.ConnectionLost, match="reconnect=False"):
        sub.get(timeout=WAIT)
    with pytest.raises(plexus.ConnectionLost, match="reconnect=False"):
        bus.ping()
    assert bus.closed


def test_without_reconnect_a_worker_process_exits_non_zero_even_with_a_handler_running(broker: Broker) -> None:
    proc = broker.spawn([sys.executable, str(WORKERS / "calc_worker.py"), "calc", "--no-reconnect"])
    caller = broker.client("caller")
    caller.wait_for("calc", timeout=WAIT)
    busy = caller.subscribe("worker.busy")
    threading.Thread(target=raised_by, args=(lambda: caller.call("calc", "slow", [60], timeout=60),)).start()
    assert busy.get(timeout=WAIT) is not None, "the handler is sleeping"
    broker.stop_process()
    _, stderr = proc.communicate(timeout=WAIT)
    assert proc.returncode not in (0, None)
    assert b"ConnectionLost" in stderr and b"reconnect=False" in stderr


def test_giving_up_reconnecting_ends_run_forever_with_an_error(broker: Broker) -> None:
    bus = broker.client("patient", reconnect_timeout=0.3)
    broker.stop_process()
    error = raised_by(bus.run_forever)
    assert isinstance(error, plexus.ConnectionLost) and "gave up reconnecting" in str(error)
    assert bus.closed


def test_closing_while_reconnecting_returns_quietly(broker: Broker) -> None:
    bus = plexus.connect(broker.bus, "closing")
    sub = bus.subscribe("sensor.*")
    broker.stop_process()
    wait_until(lambda: not connected(bus), WAIT, "the client to notice")
    bus.close()
    assert raised_by(bus.run_forever) is None
    assert sub.get(timeout=WAIT) is None, "the subscription ends without an error"


def test_asyncio_worker_and_subscriber_survive_a_broker_restart(broker: Broker) -> None:
    async def main() -> None:
        async with await plexus.aio.connect(broker.bus, "aio-worker") as worker:

            async def add(a: int, b: int) -> int:
                return a + b

            await worker.serve("math", {"add": add})
            async with await plexus.aio.connect(broker.bus, "aio-subscriber") as subscriber:
                sub = await subscriber.subscribe("sensor.*")
                await asyncio.to_thread(broker.restart)
                async with await plexus.aio.connect(broker.bus, "aio-caller") as caller:
                    await caller.wait_for("math", timeout=WAIT)
                    assert await caller.call("math", "add", [1, 2]) == 3
                    while (await caller.publish("sensor.temp", 21.5, ack=True))["delivered"] == 0:
                        await asyncio.sleep(0.02)
                    event = await sub.get(timeout=WAIT)
                    assert event is not None and event.data == 21.5
                assert (await worker.ping())["conn_id"] == worker.conn_id

    run(main())


def test_asyncio_without_reconnect_ends_with_an_error(broker: Broker) -> None:
    async def main() -> None:
        bus = await plexus.aio.connect(broker.bus, "aio-done", reconnect=False)
        try:
            sub = await bus.subscribe("sensor.*")
            await asyncio.to_thread(broker.stop_process)
            with pytest.raises(plexus.ConnectionLost, match="reconnect=False"):
                await bus.run_forever()
            with pytest.raises(plexus.ConnectionLost, match="reconnect=False"):
                async for _ in sub:
                    pass
            assert bus.closed
        finally:
            await bus.close()

    run(main())


def test_asyncio_calls_open_when_the_broker_dies_fail_and_handlers_are_cancelled(broker: Broker) -> None:
    async def main() -> None:
        started = asyncio.Event()
        cancelled = asyncio.Event()

        async def hang() -> None:
            started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        async with await plexus.aio.connect(broker.bus, "aio-worker") as worker:
            await worker.serve("slow", {"hang": hang})
            async with await plexus.aio.connect(broker.bus, "aio-caller") as caller:
                call = asyncio.ensure_future(caller.call("slow", "hang", timeout=60))
                await asyncio.wait_for(started.wait(), WAIT)
                await asyncio.to_thread(broker.stop_process, signal.SIGKILL)
                with pytest.raises(plexus.ConnectionLost, match="may or may not"):
                    await asyncio.wait_for(call, WAIT)
                await asyncio.wait_for(cancelled.wait(), WAIT)
                with pytest.raises(plexus.NotConnected):
                    await caller.ping()

    run(main())
