"""Calls through the real broker: Python caller to Python worker, errors, concurrency, wait_for."""

from __future__ import annotations

import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List

import pytest

import plexus
from conftest import Broker, wait_until

JOIN_TIMEOUT = 20.0


class Math:
    """The object the round-trip tests serve."""

    def add(self, a: int, b: int) -> Dict[str, int]:
        """`{"sum": a + b}`."""
        return {"sum": a + b}

    def _hidden(self) -> None:
        """Not a bus method: it starts with `_`."""


def test_round_trip(broker: Broker) -> None:
    worker = broker.client("worker")
    worker.serve("math", Math())
    caller = broker.client("caller")
    assert caller.call("math", "add", {"a": 10, "b": 32}) == {"sum": 42}
    with pytest.raises(plexus.NoSuchMethod):
        caller.call("math", "_hidden")


def test_one_client_calls_its_own_object(broker: Broker) -> None:
    bus = broker.client()
    bus.serve("math", {"add": lambda a, b: {"sum": a + b}})
    assert bus.call("math", "add", [10, 32]) == {"sum": 42}


def test_decorator_registers_on_first_use(broker: Broker) -> None:
    worker = broker.client("worker")

    @worker.method("math", "add")
    def add(a: int, b: int) -> Dict[str, int]:
        return {"sum": a + b}

    @worker.method("math")
    def neg(x: int) -> int:
        return -x

    caller = broker.client("caller")
    assert caller.call("math", "add", {"a": 10, "b": 32}) == {"sum": 42}
    assert caller.call("math", "neg", 5) == -5
    assert add(1, 2) == {"sum": 3}
    names = [entry["name"] for entry in caller.list()]
    assert names.count("math") == 1


def test_no_such_object_at_once(broker: Broker) -> None:
    caller = broker.client()
    with pytest.raises(plexus.NoSuchObject) as info:
        caller.call("nobody", "anything", timeout=20)
    assert info.value.code == 1


def test_timeout_when_worker_is_too_slow(broker: Broker) -> None:
    release = threading.Event()
    worker = broker.client("worker")
    worker.serve("slow", {"wait": lambda: release.wait(10), "fast": lambda: "fast"})
    caller = broker.client("caller")
    try:
        with pytest.raises(plexus.Timeout) as info:
            caller.call("slow", "wait", timeout=0.3)
        assert info.value.code == 3
        assert caller.call("slow", "fast") == "fast"
    finally:
        release.set()


def test_cancelled_call_gets_no_late_reply(broker: Broker) -> None:
    release = threading.Event()
    returned = threading.Event()

    def wait() -> None:
        release.wait(10)
        returned.set()

    worker = broker.client("worker")
    worker.serve("slow", {"wait": wait, "fast": lambda: "fast"})
    caller = broker.client("caller")
    try:
        with pytest.raises(plexus.Timeout):
            caller.call("slow", "wait", timeout=0.2)
        worker.ping()
        release.set()
        assert returned.wait(JOIN_TIMEOUT)
        assert caller.call("slow", "fast") == "fast"
        assert caller.stats()["late_replies"] == 0
    finally:
        release.set()


def test_worker_gone_when_worker_process_is_killed(broker: Broker) -> None:
    proc = broker.spawn_worker("calc")
    caller = broker.client("caller")
    caller.wait_for("calc", timeout=JOIN_TIMEOUT)
    assert caller.call("calc", "add", {"a": 1, "b": 2}) == {"sum": 3}
    busy = caller.subscribe("worker.busy")
    outcome: List[BaseException] = []

    def slow_call() -> None:
        try:
            caller.call("calc", "slow", [60], timeout=JOIN_TIMEOUT)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=slow_call)
    thread.start()
    assert busy.get(timeout=JOIN_TIMEOUT) is not None
    proc.send_signal(signal.SIGKILL)
    thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], plexus.WorkerGone), outcome
    with pytest.raises(plexus.NoSuchObject):
        caller.call("calc", "add", {"a": 1, "b": 2})


def test_many_threads_share_one_client(broker: Broker) -> None:
    worker = broker.client("worker")
    worker.serve("echo", {"echo": lambda thread, i: {"thread": thread, "i": i}})
    caller = broker.client("caller")

    def run(thread: int) -> int:
        for i in range(1000):
            assert caller.call("echo", "echo", {"thread": thread, "i": i}) == {"thread": thread, "i": i}
        return thread

    with ThreadPoolExecutor(10) as pool:
        done = [f.result(timeout=120) for f in [pool.submit(run, t) for t in range(10)]]
    assert sorted(done) == list(range(10))


def test_slow_method_does_not_block_others(broker: Broker) -> None:
    release = threading.Event()
    worker = broker.client("worker")
    worker.serve("mixed", {"block": lambda: release.wait(10), "quick": lambda: "quick"})
    caller = broker.client("caller")
    with ThreadPoolExecutor(1) as pool:
        blocked = pool.submit(caller.call, "mixed", "block", None, 15)
        try:
            assert caller.call("mixed", "quick", timeout=5) == "quick"
        finally:
            release.set()
        assert blocked.result(timeout=JOIN_TIMEOUT) is True


class Params:
    """Methods that show how JSON params become Python arguments."""

    def keywords(self, a: int, b: int = 0) -> List[int]:
        """Returns its arguments."""
        return [a, b]

    def positional(self, *args: Any) -> List[Any]:
        """Returns its positional arguments."""
        return list(args)

    def single(self, value: Any) -> Any:
        """Returns its one argument."""
        return {"got": value}

    def nothing(self) -> str:
        """Takes no arguments."""
        return "nothing"

    def fail(self) -> None:
        """Raises a plain exception."""
        raise ValueError("bad value")

    def refuse(self, x: int) -> int:
        """Raises a plexus error with data."""
        raise plexus.InvalidParams("x must be even", {"x": x})

    def not_json(self) -> object:
        """Returns something JSON cannot carry."""
        return object()


def test_params_become_arguments(broker: Broker) -> None:
    worker = broker.client("worker")
    worker.serve("params", Params())
    caller = broker.client("caller")
    assert caller.call("params", "keywords", {"a": 1, "b": 2}) == [1, 2]
    assert caller.call("params", "keywords", {"a": 1}) == [1, 0]
    assert caller.call("params", "positional", [1, "two", None]) == [1, "two", None]
    assert caller.call("params", "positional", []) == []
    assert caller.call("params", "single", "text") == {"got": "text"}
    assert caller.call("params", "single", 7) == {"got": 7}
    assert caller.call("params", "nothing") == "nothing"
    assert caller.call("params", "nothing", {}) == "nothing"
    with pytest.raises(plexus.InvalidParams):
        caller.call("params", "keywords", {"z": 1})
    with pytest.raises(plexus.InvalidParams):
        caller.call("params", "nothing", [1])


def test_exceptions_become_errors_and_the_worker_goes_on(broker: Broker) -> None:
    worker = broker.client("worker")
    worker.serve("params", Params())
    caller = broker.client("caller")
    with pytest.raises(plexus.Internal) as internal:
        caller.call("params", "fail")
    assert internal.value.code == 12 and "bad value" in internal.value.message
    with pytest.raises(plexus.InvalidParams) as refused:
        caller.call("params", "refuse", {"x": 3})
    assert refused.value.message == "x must be even" and refused.value.data == {"x": 3}
    with pytest.raises(plexus.Internal):
        caller.call("params", "not_json")
    with pytest.raises(plexus.NoSuchMethod) as missing:
        caller.call("params", "absent")
    assert missing.value.code == 2
    assert caller.call("params", "single", 1) == {"got": 1}


def test_wait_for_returns_once_a_worker_registers(broker: Broker) -> None:
    caller = broker.client("caller")
    late = broker.client("late")
    timer = threading.Timer(0.2, lambda: late.serve("late", Math()))
    timer.start()
    try:
        assert caller.wait_for(["late"], timeout=JOIN_TIMEOUT) == {"names": ["late"]}
    finally:
        timer.join(JOIN_TIMEOUT)
    assert caller.call("late", "add", [1, 1]) == {"sum": 2}


def test_wait_for_times_out(broker: Broker) -> None:
    caller = broker.client()
    with pytest.raises(plexus.Timeout) as info:
        caller.wait_for(["never", "nor-this"], timeout=0.3)
    assert info.value.data == {"missing": ["never", "nor-this"]}


def test_names_are_guarded(broker: Broker) -> None:
    first = broker.client("first")
    first.serve("math", Math())
    second = broker.client("second")
    with pytest.raises(plexus.NameTaken):
        second.serve("math", Math())
    with pytest.raises(plexus.PermissionDenied):
        second.serve("plexus", Math())
    with pytest.raises(plexus.InvalidParams):
        second.serve("bad name", Math())
    first.unserve("math")
    second.serve("math", Math())
    assert first.call("math", "add", [2, 2]) == {"sum": 4}


def test_shared_names_spread_calls(broker: Broker) -> None:
    members = [broker.client(f"member-{i}") for i in range(2)]
    for i, member in enumerate(members):
        member.serve("jobs", {"who": lambda i=i: i}, shared=True)
    caller = broker.client("caller")
    assert {caller.call("jobs", "who") for _ in range(10)} == {0, 1}


def test_broker_helpers(broker: Broker) -> None:
    bus = broker.client("helper-test")
    bus.serve("math", Math())
    assert bus.ping() == {"pong": True, "conn_id": bus.conn_id}
    (entry,) = [e for e in bus.list() if e["name"] == "math"]
    assert entry["owners"][0]["client"] == "helper-test"
    assert bus.stats()["connections"] >= 1


def test_close_fails_pending_and_later_calls(broker: Broker) -> None:
    release = threading.Event()
    worker = broker.client("worker")
    worker.serve("slow", {"wait": lambda: release.wait(10)})
    caller = plexus.connect(broker.bus)
    outcome: List[BaseException] = []

    def pending_call() -> None:
        try:
            caller.call("slow", "wait", timeout=JOIN_TIMEOUT)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=pending_call)
    thread.start()
    try:
        wait_until(lambda: worker.stats()["pending_calls"] == 1, JOIN_TIMEOUT, "the call to be pending")
        caller.close()
        thread.join(JOIN_TIMEOUT)
    finally:
        release.set()
    assert len(outcome) == 1 and isinstance(outcome[0], plexus.ConnectionLost)
    with pytest.raises(plexus.ConnectionLost):
        caller.call("slow", "wait")


def test_served_methods_are_declared_for_introspect(broker: Broker) -> None:
    worker = broker.client("worker")
    worker.serve("math", Math())

    @worker.method("tools", "first")
    def first() -> int:
        return 1

    @worker.method("tools", "second")
    def second() -> int:
        return 2

    caller = broker.client("caller")
    math = caller.call("plexus", "introspect", {"name": "math"})
    assert math["description"] == {"methods": {"add": {}}}, "public methods only"
    tools = caller.call("plexus", "introspect", "tools")
    assert sorted(tools["description"]["methods"]) == ["first", "second"], "later decorated methods are declared too"
