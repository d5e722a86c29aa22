"""Publish and subscribe through the real broker: wildcards, callbacks, acknowledgements."""

from __future__ import annotations

import queue

import pytest

import plexus
from conftest import Broker

WAIT = 10.0


def next_event(sub: plexus.Subscription) -> plexus.Event:
    """The subscription's next event, which must come within `WAIT` seconds."""
    event = sub.get(timeout=WAIT)
    assert event is not None, f"subscription {sub.pattern!r} ended"
    return event


def test_wildcards(broker: Broker) -> None:
    subscriber = broker.client("subscriber")
    one = subscriber.subscribe("sensor.*")
    many = subscriber.subscribe("sensor.>")
    publisher = broker.client("publisher")
    publisher.publish("sensor.temp", 25.6)
    publisher.publish("sensor.room.1", {"lux": 300})
    publisher.publish("other.temp", 1)
    publisher.publish("sensor.end", None)
    first = next_event(one)
    assert (first.topic, first.data, first.dropped) == ("sensor.temp", 25.6, 0)
    assert next_event(one).topic == "sensor.end"
    got = [next_event(many) for _ in range(3)]
    assert [(e.topic, e.data) for e in got] == [
        ("sensor.temp", 25.6),
        ("sensor.room.1", {"lux": 300}),
        ("sensor.end", None),
    ]
    with pytest.raises(plexus.Timeout):
        one.get(timeout=0.2)


def test_callback_form(broker: Broker) -> None:
    received: "queue.Queue[plexus.Event]" = queue.Queue()
    subscriber = broker.client("subscriber")
    subscriber.subscribe("alerts.*", callback=received.put)
    publisher = broker.client("publisher")
    for i in range(3):
        publisher.publish(f"alerts.n{i}", {"i": i})
    got = [received.get(timeout=WAIT) for _ in range(3)]
    assert [(e.topic, e.data) for e in got] == [(f"alerts.n{i}", {"i": i}) for i in range(3)]


def test_ack_counts_deliveries(broker: Broker) -> None:
    subscriber = broker.client("subscriber")
    sub = subscriber.subscribe("a.b")
    subscriber.subscribe("a.*")
    publisher = broker.client("publisher")
    assert publisher.publish("a.b", {"v": 1}, ack=True) == {"delivered": 2, "dropped": 0}
    assert publisher.publish("x.y", 1, ack=True) == {"delivered": 0, "dropped": 0}
    sub.close()
    assert next_event(sub).data == {"v": 1}, "events queued before close() are still read"
    assert sub.get(timeout=WAIT) is None
    assert list(sub) == []
    subscriber.ping()  # unsubscribe has no answer; the pong after it says the broker applied it
    assert publisher.publish("a.b", {"v": 2}, ack=True) == {"delivered": 1, "dropped": 0}


def test_iteration_ends_when_the_client_closes(broker: Broker) -> None:
    subscriber = plexus.connect(broker.bus)
    sub = subscriber.subscribe(">")
    broker.client().publish("last.one", "bye", ack=True)
    subscriber.close()
    assert [e.data for e in sub] in (["bye"], [])


def test_bad_topics_and_patterns_are_refused(broker: Broker) -> None:
    bus = broker.client()
    with pytest.raises(plexus.InvalidParams):
        bus.publish("sensor.*", 1)
    with pytest.raises(plexus.InvalidParams):
        bus.subscribe("sensor.>.x")


def test_a_queue_group_shares_the_events(broker: Broker) -> None:
    members = [broker.client(f"member-{i}").subscribe("jobs.*", queue="workers") for i in range(2)]
    everyone = broker.client("plain").subscribe("jobs.*")
    publisher = broker.client("publisher")
    for i in range(4):
        publisher.publish("jobs.run", i)
    assert [next_event(everyone).data for _ in range(4)] == [0, 1, 2, 3]
    got = sorted(next_event(m).data for m in members for _ in range(2))
    assert got == [0, 1, 2, 3], "round-robin: two each"
