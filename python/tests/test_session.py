"""The protocol state without a socket: requests to bytes, broker frames to outcomes, losing the connection and reconnecting."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, List

import pytest

import plexus
from plexus._codec import FLAG_ACK, FLAG_SHARED, Frame, Kind, decode
from plexus._requests import GRACE, REQUEST_TIMEOUT
from plexus._session import (
    Abandon,
    Answer,
    Deliver,
    End,
    Outcome,
    Request,
    Send,
    Serve,
    Session,
    Welcome,
    check_welcome,
    hello,
)
from plexus._transport import Address
from plexus.events import Event

ADDRESS = Address(path="/run/test.sock")


class Waiter:
    """A stand-in for a driver's slot or future: only its identity matters here."""


def session(max_frame: int = 1 << 20) -> Session[Waiter, str]:
    return Session(ADDRESS, max_frame, Waiter)


def subscribe(s: Session[Waiter, str], pattern: str) -> Request[Waiter]:
    """Subscribes to `pattern` with the subscription object `sub-<id>`."""
    request, sub = s.subscribe(pattern, lambda sub_id: f"sub-{sub_id}")
    assert sub == f"sub-{request.id}"
    return request


def reply(rid: int, result: Any = None) -> Frame:
    return Frame(Kind.REPLY, rid, payload=b"" if result is None else json.dumps(result).encode())


def incoming_call(call_id: int, obj: str, method: str, params: Any = None, timeout_ms: int = 0) -> Frame:
    payload = b"" if params is None else json.dumps(params).encode()
    return Frame(Kind.CALL, call_id, timeout_ms, strings=(obj, method), payload=payload)


def serve(s: Session[Waiter, str], frame: Frame) -> Serve:
    """The handler to run for incoming call `frame`."""
    (outcome,) = s.receive(frame)
    assert isinstance(outcome, Serve)
    return outcome


def answer_of(data: Any) -> Frame:
    """The frame a handler's answer bytes carry."""
    assert isinstance(data, bytes)
    return decode(data)


def served_session() -> Session[Waiter, str]:
    """A session serving `math` (add, fail) whose registration succeeded."""
    s = session()

    def fail() -> None:
        raise plexus.Overloaded("busy", {"retry_ms": 10})

    request = s.serve("math", {"add": lambda a, b: a + b, "fail": fail}, shared=False)
    assert s.receive(reply(request.id)) == [Answer(request.waiter, None)]
    s.settle(request, ok=True)
    return s


def test_handshake() -> None:
    assert decode(hello("python:test")) == Frame(Kind.HELLO, strings=("python:test",))
    welcome = Frame(Kind.WELCOME, 7, aux=4096, strings=("0.1.0",))
    assert check_welcome(welcome, ADDRESS) == Welcome(7, 4096, "0.1.0")
    assert check_welcome(Frame(Kind.WELCOME, 7, strings=("0.1.0",)), ADDRESS).max_frame == 16 * 1024 * 1024 + 64 * 1024
    refused = Frame(Kind.ERROR, aux=8, strings=("unsupported version",))
    with pytest.raises(plexus.UnsupportedVersion):
        check_welcome(refused, ADDRESS)
    with pytest.raises(plexus.ConnectionLost, match="during the handshake"):
        check_welcome(None, ADDRESS)
    with pytest.raises(plexus.BadFrame, match="expected welcome"):
        check_welcome(Frame(Kind.PONG), ADDRESS)


def test_call_round_trip() -> None:
    s = session()
    request = s.call("math", "add", {"a": 1, "b": 2}, timeout=2.5)
    frame = decode(request.data)
    assert frame == Frame(Kind.CALL, request.id, 2500, strings=("math", "add"), payload=b'{"a":1,"b":2}')
    assert request.wait == 2.5 + GRACE
    assert request.cancel is not None and decode(request.cancel) == Frame(Kind.CANCEL, request.id)
    assert s.receive(reply(request.id, {"sum": 3})) == [Answer(request.waiter, {"sum": 3})]
    assert s.receive(reply(request.id, {"sum": 3})) == [], "a second answer finds nobody waiting"
    assert s.settle(request, ok=True) == []


def test_ids_are_fresh_for_every_request() -> None:
    s = session()
    first = s.call("math", "add", None, timeout=None)
    assert decode(first.data).aux == 0, "no timeout: the broker's default"
    assert first.wait is None
    ids: List[int] = []

    def start() -> None:
        for _ in range(200):
            ids.append(s.call("math", "add", None, timeout=1).id)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 800 and first.id not in ids


def test_error_answers() -> None:
    s = session()
    request = s.call("math", "div", [1, 0], timeout=1)
    error = Frame(Kind.ERROR, request.id, aux=11, strings=("busy",), payload=b'{"retry_ms":10}')
    (outcome,) = s.receive(error)
    assert isinstance(outcome, Answer) and outcome.waiter is request.waiter
    assert isinstance(outcome.error, plexus.Overloaded) and outcome.error.data == {"retry_ms": 10}
    garbled = s.call("math", "add", None, timeout=1)
    (outcome,) = s.receive(Frame(Kind.REPLY, garbled.id, payload=b"{not json"))
    assert isinstance(outcome, Answer) and isinstance(outcome.error, ValueError)


def test_a_request_given_up_on_ignores_its_late_answer() -> None:
    s = session()
    request = s.call("slow", "wait", None, timeout=0.2)
    assert str(request.timed_out()) == f"no answer to slow.wait within {0.2 + GRACE} s"
    assert s.settle(request, ok=False) == []
    assert s.receive(reply(request.id, 1)) == []


def test_publish() -> None:
    s = session()
    assert decode(s.publish("sensor.temp", 25.5)) == Frame(Kind.PUBLISH, 0, strings=("sensor.temp",), payload=b"25.5")
    request = s.publish_acked("sensor.temp", None)
    acked = Frame(Kind.PUBLISH, request.id, flags=FLAG_ACK, strings=("sensor.temp",), payload=b"null")
    assert decode(request.data) == acked
    assert request.wait == REQUEST_TIMEOUT and request.cancel is None
    counts = {"delivered": 2, "dropped": 0}
    assert s.receive(reply(request.id, counts)) == [Answer(request.waiter, counts)]
    with pytest.raises(plexus.InvalidParams):
        s.publish("sensor.>", 1)


def test_frames_over_the_limit_are_refused_before_anything_waits() -> None:
    s = session(max_frame=100)
    with pytest.raises(plexus.FrameTooLarge):
        s.publish("big", "x" * 100)
    with pytest.raises(plexus.FrameTooLarge):
        s.call("big", "take", "x" * 100, timeout=1)
    assert s.connection_lost(None, reconnect=False) == [], "nothing was left waiting"


def test_events_reach_their_subscription() -> None:
    s = session()
    request = subscribe(s, "sensor.*")
    sub = f"sub-{request.id}"
    assert decode(request.data) == Frame(Kind.SUBSCRIBE, request.id, strings=("sensor.*",))
    assert s.receive(reply(request.id)) == [Answer(request.waiter, None)]
    event = Frame(Kind.EVENT, request.id, aux=3, strings=("sensor.temp",), payload=b"21.5")
    assert s.receive(event) == [Deliver(sub, Event("sensor.temp", b"21.5", 3))]
    assert s.receive(Frame(Kind.EVENT, 999, strings=("sensor.temp",))) == []
    assert decode(s.unsubscribe(request.id)) == Frame(Kind.UNSUBSCRIBE, request.id)
    assert s.receive(event) == []


def test_a_failed_subscribe_ends_its_subscription() -> None:
    s = session()
    request = subscribe(s, "sensor.*")
    (outcome,) = s.receive(Frame(Kind.ERROR, request.id, aux=10, strings=("bad pattern",)))
    assert isinstance(outcome, Answer) and isinstance(outcome.error, plexus.InvalidParams)
    assert s.settle(request, ok=False) == [End(f"sub-{request.id}")]
    assert s.receive(Frame(Kind.EVENT, request.id, strings=("sensor.temp",))) == []


def test_serve_registers_and_refuses_a_second_claim() -> None:
    s = session()
    request = s.serve("jobs", {"run": lambda: None, "stop": lambda: None}, shared=True)
    frame = decode(request.data)
    assert (frame.kind, frame.flags, frame.strings) == (Kind.REGISTER, FLAG_SHARED, ("jobs",))
    assert json.loads(frame.payload) == {"methods": {"run": {}, "stop": {}}}
    with pytest.raises(plexus.NameTaken):
        s.serve("jobs", {}, shared=False)
    with pytest.raises(plexus.InvalidParams):
        s.serve("bad name", {}, shared=False)


def test_a_failed_claim_uninstalls_the_object() -> None:
    s = session()
    request = s.serve("math", {"add": lambda a, b: a + b}, shared=False)
    s.receive(Frame(Kind.ERROR, request.id, aux=5, strings=("name taken",)))
    s.settle(request, ok=False)
    (outcome,) = s.receive(incoming_call(50, "math", "add", [1, 2]))
    assert isinstance(outcome, Send)
    assert answer_of(outcome.data).aux == plexus.NoSuchObject.code
    s.serve("math", {}, shared=False)  # the name is free to claim again


def test_incoming_calls_run_handlers_and_answer() -> None:
    s = served_session()
    call = serve(s, incoming_call(50, "math", "add", {"a": 1, "b": 2}))
    assert call.id == 50 and call.epoch == 1
    result = call.fn(*call.args, **call.kwargs)
    assert answer_of(s.answered(call, result)) == Frame(Kind.REPLY, 50, payload=b"3")
    assert s.answered(call, result) is None, "a call is answered once"
    call = serve(s, incoming_call(51, "math", "fail"))
    with pytest.raises(plexus.Overloaded) as raised:
        call.fn()
    error = answer_of(s.answered(call, error=raised.value))
    assert (error.kind, error.aux, error.strings, error.payload) == (Kind.ERROR, 11, ("busy",), b'{"retry_ms":10}')


def test_a_handler_that_declares_ctx_gets_the_call_context() -> None:
    s = session()

    def crunch(n: int, ctx: plexus.CallContext) -> int:
        return n

    request = s.serve("jobs", {"crunch": crunch, "plain": lambda n: n}, shared=False)
    s.receive(reply(request.id))
    call = serve(s, incoming_call(40, "jobs", "crunch", {"n": 3}, timeout_ms=2500))
    assert call.kwargs == {"n": 3, "ctx": call.context}
    assert (call.context.object, call.context.method, call.context.timeout) == ("jobs", "crunch", 2.5)
    assert serve(s, incoming_call(41, "jobs", "crunch", [3])).args == (3,)
    assert serve(s, incoming_call(42, "jobs", "plain", {"n": 3})).kwargs == {"n": 3}, "no ctx unless declared"
    (refused,) = s.receive(incoming_call(43, "jobs", "crunch", {"n": 3, "ctx": 1}))
    assert isinstance(refused, Send) and answer_of(refused.data).aux == plexus.InvalidParams.code


def test_incoming_calls_that_cannot_run_are_answered_at_once() -> None:
    s = served_session()
    for frame, code in [
        (incoming_call(60, "other", "add"), plexus.NoSuchObject.code),
        (incoming_call(61, "math", "div"), plexus.NoSuchMethod.code),
        (incoming_call(62, "math", "add", {"c": 1}), plexus.InvalidParams.code),
        (Frame(Kind.CALL, 63, strings=("math", "add"), payload=b"{oops"), plexus.InvalidParams.code),
    ]:
        (outcome,) = s.receive(frame)
        assert isinstance(outcome, Send)
        answer = answer_of(outcome.data)
        assert (answer.kind, answer.id, answer.aux) == (Kind.ERROR, frame.id, code)


def test_handler_failures_and_oversized_answers_become_internal_errors(caplog: pytest.LogCaptureFixture) -> None:
    s = session(max_frame=200)
    request = s.serve("math", {"make": lambda n: "x" * n}, shared=False)
    s.receive(reply(request.id))
    crashing, large = (serve(s, incoming_call(call_id, "math", "make", 1)) for call_id in (70, 71))
    with caplog.at_level(logging.ERROR, logger="plexus"):
        crashed = answer_of(s.answered(crashing, error=KeyError("k")))
    assert (crashed.aux, crashed.strings) == (plexus.Internal.code, ("KeyError: 'k'",))
    assert "a served method raised" in caplog.text
    too_large = answer_of(s.answered(large, "x" * 500))
    assert too_large.aux == plexus.Internal.code and "too large" in too_large.string(0)


def test_a_cancelled_call_tells_its_handler_and_is_not_answered() -> None:
    s = served_session()
    call = serve(s, incoming_call(80, "math", "add", [1, 2]))
    assert not call.context.is_cancelled()
    assert s.receive(Frame(Kind.CANCEL, 80)) == [Abandon(call.context)]
    assert call.context.is_cancelled() and call.context.wait(0)
    assert s.answered(call, 3) is None
    assert s.receive(Frame(Kind.CANCEL, 81)) == [], "a cancel for no running call is ignored"


def test_methods_added_one_by_one() -> None:
    s = session()
    first = s.add_method("tools", "first", lambda: 1, shared=False)
    assert first.claim == "tools"
    assert json.loads(decode(first.data).payload) == {"methods": {"first": {}}}
    second = s.add_method("tools", "second", lambda: 2, shared=False)
    assert second.claim == "" and second.what == "declare tools.second"
    assert json.loads(decode(second.data).payload) == {"methods": {"first": {}, "second": {}}}
    s.settle(second, ok=False)
    (outcome,) = s.receive(incoming_call(90, "tools", "second"))
    assert isinstance(outcome, Serve), "a failed declare keeps the object"
    s.settle(first, ok=False)
    (outcome,) = s.receive(incoming_call(91, "tools", "first"))
    assert isinstance(outcome, Send), "a failed first registration withdraws it"


def test_unserve() -> None:
    s = served_session()
    request = s.unserve("math")
    assert decode(request.data) == Frame(Kind.UNREGISTER, request.id, strings=("math",))
    (outcome,) = s.receive(incoming_call(95, "math", "add", [1, 2]))
    assert isinstance(outcome, Send) and answer_of(outcome.data).aux == plexus.NoSuchObject.code


def running(s: Session[Waiter, str]) -> Serve:
    """A served session's handler for incoming call 50, running."""
    return serve(s, incoming_call(50, "math", "add", [1, 2]))


def test_without_reconnect_a_lost_connection_ends_everything(caplog: pytest.LogCaptureFixture) -> None:
    s = served_session()
    call = s.call("math", "add", [1, 2], timeout=1)
    sub = subscribe(s, "sensor.*")
    handler = running(s)
    with caplog.at_level(logging.WARNING, logger="plexus"):
        outcomes = s.connection_lost(OSError("reset"), reconnect=False)
    reason = "the connection to the broker at unix:/run/test.sock failed: reset"
    assert caplog.messages == [f"{reason}, and reconnect=False: this client is done; restart the program once the broker is back"]
    answers = [o for o in outcomes if isinstance(o, Answer)]
    assert {id(a.waiter) for a in answers} == {id(call.waiter), id(sub.waiter)}
    assert all(isinstance(a.error, plexus.ConnectionLost) for a in answers)
    assert all(str(a.error) == f"{reason} while the request was open; it may or may not have been carried out" for a in answers)
    assert [o for o in outcomes if isinstance(o, End)] == [End(f"sub-{sub.id}")], "its subscribe failed"
    assert [o for o in outcomes if isinstance(o, Abandon)] == [Abandon(handler.context)]
    assert handler.context.is_cancelled() and s.answered(handler, 3) is None
    assert s.closed
    assert isinstance(s.failure, plexus.ConnectionLost) and "reconnect=False" in str(s.failure)
    with pytest.raises(plexus.ConnectionLost, match="failed: reset"):
        s.call("math", "add", None, timeout=1)
    with pytest.raises(plexus.ConnectionLost):
        s.check_open()


def test_without_reconnect_established_subscriptions_end_with_the_error() -> None:
    s = session()
    sub = subscribe(s, "sensor.*")
    s.receive(reply(sub.id))
    s.settle(sub, ok=True)
    (end,) = s.connection_lost(None, reconnect=False)
    assert isinstance(end, End) and end.subscription == f"sub-{sub.id}"
    assert isinstance(end.error, plexus.ConnectionLost) and "closed the connection" in str(end.error)


def test_closing_ends_quietly(caplog: pytest.LogCaptureFixture) -> None:
    s = served_session()
    call = s.call("math", "add", [1, 2], timeout=1)
    handler = running(s)
    assert s.close() == [Abandon(handler.context)]
    assert s.closed and s.failure is None
    with pytest.raises(plexus.ConnectionLost, match="the client is closed"):
        s.serve("other", {}, shared=False)
    with caplog.at_level(logging.WARNING, logger="plexus"):
        (outcome,) = s.connection_lost(None, reconnect=True)
    assert caplog.messages == [], "a connection the user closed is not reconnected"
    assert isinstance(outcome, Answer) and outcome.waiter is call.waiter
    assert str(outcome.error) == "the client was closed"
    assert s.failure is None


def established(s: Session[Waiter, str], pattern: str) -> Request[Waiter]:
    """A subscription to `pattern` the broker confirmed."""
    request = subscribe(s, pattern)
    s.receive(reply(request.id))
    s.settle(request, ok=True)
    return request


def test_a_lost_connection_fails_open_requests_and_keeps_what_it_serves(caplog: pytest.LogCaptureFixture) -> None:
    s = served_session()
    sub = established(s, "sensor.*")
    call = s.call("math", "add", [1, 2], timeout=1)
    opening = subscribe(s, "alerts.*")
    claim = s.serve("jobs", {"run": lambda: None}, shared=False)
    handler = running(s)
    with caplog.at_level(logging.WARNING, logger="plexus"):
        outcomes: List[Outcome[Waiter, str]] = s.connection_lost(None, reconnect=True)
    reason = "the broker at unix:/run/test.sock closed the connection"
    assert caplog.messages == [f"{reason}; reconnecting (requests fail with NotConnected until it is back)"]
    answers = [o for o in outcomes if isinstance(o, Answer)]
    assert {id(a.waiter) for a in answers} == {id(call.waiter), id(opening.waiter), id(claim.waiter)}
    assert all(isinstance(a.error, plexus.ConnectionLost) and "may or may not" in str(a.error) for a in answers)
    assert [o for o in outcomes if isinstance(o, End)] == [End(f"sub-{opening.id}")], "only the unconfirmed one"
    assert [o for o in outcomes if isinstance(o, Abandon)] == [Abandon(handler.context)]
    assert not s.closed and s.failure is None
    with pytest.raises(plexus.NotConnected, match="reconnecting, and nothing was sent"):
        s.call("math", "add", None, timeout=1)
    with pytest.raises(plexus.NotConnected):
        s.check_open()

    frames = [decode(data) for data in s.reconnected(4096)]
    assert [(f.kind, f.strings) for f in frames] == [(Kind.REGISTER, ("math",)), (Kind.SUBSCRIBE, ("sensor.*",))]
    assert frames[1].id == sub.id, "a subscription keeps its id"
    s.check_open()
    with pytest.raises(plexus.NotConnected, match="lost before this was sent"):
        s.check_open(call.epoch)
    assert s.settle(call, ok=False) == []
    assert s.receive(reply(frames[0].id)) == [] and s.receive(reply(frames[1].id)) == []
    event = Frame(Kind.EVENT, sub.id, strings=("sensor.temp",), payload=b"1")
    assert s.receive(event) == [Deliver(f"sub-{sub.id}", Event("sensor.temp", b"1"))]
    with pytest.raises(plexus.FrameTooLarge, match="limit of 4096 bytes"):
        s.publish("big", "x" * 5000)


def test_an_answer_from_a_lost_connection_is_never_sent_on_the_new_one() -> None:
    s = served_session()
    old = running(s)
    s.connection_lost(None, reconnect=True)
    s.reconnected(1 << 20)
    new = running(s)
    assert (old.id, old.epoch) == (new.id, 1) and new.epoch == 2
    assert s.answered(old, 3) is None
    assert answer_of(s.answered(new, 3)) == Frame(Kind.REPLY, 50, payload=b"3")
    (refusal,) = s.receive(incoming_call(51, "other", "x"))
    assert isinstance(refusal, Send) and refusal.epoch == 2


def test_reconnect_restores_names_and_subscriptions(caplog: pytest.LogCaptureFixture) -> None:
    s = served_session()
    jobs = s.add_method("jobs", "run", lambda: None, shared=True)
    s.receive(reply(jobs.id))
    s.settle(jobs, ok=True)
    sub = established(s, "sensor.*")
    s.connection_lost(None, reconnect=True)
    frames = [decode(data) for data in s.reconnected(1 << 20)]
    assert [(f.kind, f.strings, f.flags) for f in frames] == [
        (Kind.REGISTER, ("math",), 0),
        (Kind.REGISTER, ("jobs",), FLAG_SHARED),
        (Kind.SUBSCRIBE, ("sensor.*",), 0),
    ]
    assert json.loads(frames[0].payload) == {"methods": {"add": {}, "fail": {}}}
    assert frames[2].id == sub.id, "a subscription keeps its id"
    assert len({f.id for f in frames}) == 3
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="plexus"):
        assert s.receive(reply(frames[0].id)) == []
        assert s.receive(Frame(Kind.ERROR, frames[1].id, aux=5, strings=("name taken",))) == []
    assert caplog.messages == ["registering 'jobs' again failed: name taken"]


def test_giving_up_ends_subscriptions_with_the_error(caplog: pytest.LogCaptureFixture) -> None:
    s = session()
    sub = established(s, "sensor.*")
    s.connection_lost(None, reconnect=True)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="plexus"):
        (end,) = s.give_up(12.0, plexus.NoBroker("no broker at unix:/run/test.sock"))
    assert caplog.messages == [
        "gave up reconnecting to the broker at unix:/run/test.sock after 12.0 s "
        "(the last attempt: no broker at unix:/run/test.sock); start the broker (`plexus broker`) "
        "and restart this program, or raise reconnect_timeout"
    ]
    assert end == End(f"sub-{sub.id}", end.error) and str(end.error) == caplog.messages[0]
    assert s.closed and str(s.failure) == caplog.messages[0]
    with pytest.raises(plexus.ConnectionLost, match="gave up"):
        s.call("math", "add", None, timeout=1)
    with pytest.raises(plexus.ConnectionLost):
        s.reconnected(1 << 20)


def test_unexpected_frames_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    s = session()
    with caplog.at_level(logging.WARNING, logger="plexus"):
        assert s.receive(Frame(Kind.WELCOME, 1, strings=("0.1.0",))) == []
        assert s.receive(Frame(Kind.ERROR, 0, aux=7, strings=("bad frame",))) == []
        assert s.receive(Frame(Kind.ERROR, 12345, aux=7, strings=("late",))) == []
    assert caplog.messages == [
        "ignoring an unexpected welcome frame from the broker",
        "the broker reported an error: bad frame",
    ]
