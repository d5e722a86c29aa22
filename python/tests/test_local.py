"""Pure client-side rules: bus addresses, names, errors, argument binding, reconnect waits and the worker pool (no broker needed)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import List

import pytest

import plexus
from plexus._dispatch import arguments
from plexus._pool import WorkerPool
from plexus._reconnect import Backoff, Policy
from plexus._transport import Address, parse_address, resolve_address
from plexus.errors import error_for


def test_address_forms() -> None:
    assert parse_address("unix:/run/bus.sock") == Address(path="/run/bus.sock")
    assert parse_address("unix:///run/bus.sock") == Address(path="/run/bus.sock")
    assert parse_address("/run/bus.sock") == Address(path="/run/bus.sock")
    assert parse_address("tcp://127.0.0.1:7070") == Address(host="127.0.0.1", port=7070)
    assert parse_address("tcp://[::1]:7070") == Address(host="::1", port=7070)
    assert str(parse_address("tcp://[::1]:7070")) == "tcp://[::1]:7070"
    for bad in ("tcp://host", "tcp://:1", "tcp://h:x", "unix:", "http://h:1", ""):
        with pytest.raises(ValueError):
            parse_address(bad)


def test_address_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXUS_BUS", "unix:/from/env")
    assert resolve_address("unix:/given") == Address(path="/given")
    assert resolve_address(None) == Address(path="/from/env")
    monkeypatch.delenv("PLEXUS_BUS")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/5")
    assert resolve_address(None) == Address(path="/run/user/5/plexus/bus.sock")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert plexus.default_socket() == f"/tmp/plexus-{__import__('os').getuid()}/bus.sock"


def test_no_broker_names_the_path(tmp_path: Path) -> None:
    path = f"{tmp_path}/nobody.sock"
    with pytest.raises(plexus.NoBroker) as info:
        plexus.connect(f"unix:{path}")
    assert path in str(info.value)
    assert "plexus broker" in str(info.value)
    assert isinstance(info.value, plexus.Error)


def test_names() -> None:
    assert plexus.validate_name("org.example.math-2:v1") == "org.example.math-2:v1"
    assert plexus.validate_pattern("sensor.*.temp") == "sensor.*.temp"
    assert plexus.validate_pattern(">") == ">"
    for bad in ("", "a..b", ".a", "a b", "a.*", "x" * 256):
        with pytest.raises(plexus.InvalidParams):
            plexus.validate_name(bad)
    with pytest.raises(plexus.InvalidParams):
        plexus.validate_topic("sensor.>")
    for bad in ("sensor.>.x", "sen*"):
        with pytest.raises(plexus.InvalidParams):
            plexus.validate_pattern(bad)


def test_error_codes() -> None:
    expected = {
        1: plexus.NoSuchObject,
        2: plexus.NoSuchMethod,
        3: plexus.Timeout,
        4: plexus.WorkerGone,
        5: plexus.NameTaken,
        6: plexus.FrameTooLarge,
        7: plexus.BadFrame,
        8: plexus.UnsupportedVersion,
        9: plexus.PermissionDenied,
        10: plexus.InvalidParams,
        11: plexus.Overloaded,
        12: plexus.Internal,
        13: plexus.ShuttingDown,
    }
    for code, cls in expected.items():
        err = error_for(code, "msg", {"k": 1})
        assert type(err) is cls and err.code == code and err.message == "msg" and err.data == {"k": 1}
    unknown = error_for(99, "new")
    assert type(unknown) is plexus.Error and unknown.code == 99


def test_params_to_arguments() -> None:
    def add(a: int, b: int = 0) -> int:
        return a + b

    assert arguments(add, {"a": 1, "b": 2}) == ((), {"a": 1, "b": 2})
    assert arguments(add, [1, 2]) == ((1, 2), {})
    assert arguments(add, 5) == ((5,), {})
    assert arguments(lambda: 0, None) == ((), {})
    with pytest.raises(plexus.InvalidParams):
        arguments(add, {"c": 1})
    with pytest.raises(plexus.InvalidParams):
        arguments(add, [1, 2, 3])


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_reconnect_waits_double_up_to_two_seconds_with_jitter() -> None:
    longest = Backoff(None, rand=lambda: 0.0)
    assert [longest.next_wait() for _ in range(8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    shortest = Backoff(None, rand=lambda: 1.0)
    assert [shortest.next_wait() for _ in range(3)] == [0.025, 0.05, 0.1], "jitter takes off at most half"


def test_reconnecting_gives_up_at_the_deadline() -> None:
    clock = Clock()
    backoff = Backoff(0.3, clock, rand=lambda: 0.0)
    assert backoff.next_wait() == 0.05
    clock.now += 0.2
    assert backoff.next_wait() == pytest.approx(0.1), "no attempt is skipped before the deadline"
    assert backoff.waited() == pytest.approx(0.2)
    clock.now += 0.05
    assert backoff.next_wait() == pytest.approx(0.05), "the last wait ends at the deadline"
    clock.now += 0.05
    assert backoff.next_wait() is None
    assert Backoff(0.0, Clock()).next_wait() is None
    with pytest.raises(ValueError, match="reconnect_timeout"):
        Policy(give_up_after=-1)


def test_the_pool_refuses_work_beyond_its_size_and_frees_a_place_before_handing_on() -> None:
    pool = WorkerPool(2, "test-pool")
    release_first, release_second = threading.Event(), threading.Event()
    handed: List[str] = []
    after = threading.Event()

    def hand_on(result: str) -> None:
        handed.append(result)
        handed.append("free" if pool.try_run(lambda: "again", handed.append) else "full")
        after.set()

    try:
        assert pool.try_run(lambda: release_first.wait(10) and "first", hand_on)
        assert pool.try_run(lambda: release_second.wait(10) and "second", lambda _: None)
        assert not pool.try_run(lambda: "third", handed.append), "both places are taken"
        release_first.set()
        assert after.wait(10)
        assert handed[:2] == ["first", "free"], "the first job's place was free when its result was handed on"
    finally:
        release_second.set()
    pool.shutdown()
    assert not pool.try_run(lambda: "late", handed.append)
    with pytest.raises(ValueError, match="workers must be at least 1"):
        WorkerPool(0, "none")
