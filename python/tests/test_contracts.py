"""Contracts declared from Python (`serve(schemas=...)`, the decorator's `params=`/`result=`,
type hints), checked by the real broker."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional

import pytest

import plexus
import plexus.aio
from conftest import Broker

ADD_PARAMS = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}


class Calculator:
    def add(self, a: int, b: int) -> Any:
        return {"sum": a + b} if a != 13 else {"sum": "unlucky"}

    def free(self, **anything: Any) -> str:
        return "ok"


def test_serve_with_schemas_is_enforced_by_the_broker(broker: Broker) -> None:
    worker = broker.client("worker")
    worker.serve(
        "math",
        Calculator(),
        schemas={
            "add": {
                "params": ADD_PARAMS,
                "result": {"type": "object", "properties": {"sum": {"type": "integer"}}},
                "description": "Adds two integers.",
            }
        },
        topics={"math.done": {"type": "integer"}},
    )
    caller = broker.client("caller")
    assert caller.call("math", "add", {"a": 1, "b": 2}) == {"sum": 3}
    with pytest.raises(plexus.InvalidParams) as refused:
        caller.call("math", "add", {"a": 1, "b": "two"})
    assert refused.value.data["pointer"] == "/b"
    assert refused.value.data["keyword"] == "type"
    with pytest.raises(plexus.InvalidResult) as bad:
        caller.call("math", "add", {"a": 13, "b": 0})
    assert bad.value.data["pointer"] == "/sum"
    assert caller.call("math", "free", {"x": [1]}) == "ok", "a method without schemas takes anything"
    with pytest.raises(plexus.InvalidParams):
        caller.publish("math.done", "seven", ack=True)
    assert caller.publish("math.done", 7, ack=True) == {"delivered": 0, "dropped": 0}

    described = caller.call("plexus", "introspect", {"name": "math"})["description"]
    assert described["methods"]["add"]["description"] == "Adds two integers."
    assert described["methods"]["free"] == {}
    assert described["topics"] == {"math.done": {"payload": {"type": "integer"}}}


def test_the_decorator_takes_params_and_result_and_type_hints(broker: Broker) -> None:
    worker = broker.client("worker")

    @worker.method("shop", params={"type": "object", "required": ["item"]}, result={"type": "string"}, deprecated=True)
    def order(item: str) -> Any:
        return item if item != "nothing" else 0

    @worker.method("shop", typed=True, description="Totals a basket.")
    def total(prices: List[float], discount: Optional[float] = None) -> float:
        return sum(prices) - (discount or 0)

    caller = broker.client("caller")
    assert caller.call("shop", "order", {"item": "tea"}) == "tea"
    with pytest.raises(plexus.InvalidParams) as refused:
        caller.call("shop", "order", {"thing": "tea"})
    assert refused.value.data["keyword"] == "required"
    with pytest.raises(plexus.InvalidResult):
        caller.call("shop", "order", {"item": "nothing"})
    assert caller.call("shop", "total", {"prices": [1.5, 2]}) == 3.5
    with pytest.raises(plexus.InvalidParams) as refused:
        caller.call("shop", "total", {"prices": ["a"]})
    assert refused.value.data["pointer"] == "/prices/0"
    with pytest.raises(plexus.InvalidParams):
        caller.call("shop", "total", {"prices": [1], "discount": "none"})

    methods: Dict[str, Any] = caller.call("plexus", "introspect", {"name": "shop"})["description"]["methods"]
    assert methods["order"]["deprecated"] is True
    assert methods["total"]["description"] == "Totals a basket."
    assert methods["total"]["params"]["required"] == ["prices"]
    assert methods["total"]["result"] == {"type": "number"}


def test_a_contract_the_broker_refuses_raises_with_the_reason(broker: Broker) -> None:
    worker = broker.client("worker")
    with pytest.raises(plexus.InvalidParams) as refused:
        worker.serve("math", Calculator(), schemas={"add": {"params": {"type": "integr"}}})
    assert "/methods/add/params" in refused.value.message
    with pytest.raises(TypeError):
        worker.serve("math", Calculator(), schemas={"nope": {"params": {}}})
    with pytest.raises(TypeError):
        worker.serve("math", Calculator(), schemas={"add": {"param": {}}})


def test_asyncio_serve_with_schemas(broker: Broker) -> None:
    async def main() -> None:
        worker = await plexus.aio.connect(broker.bus, name="aio-worker")
        caller = await plexus.aio.connect(broker.bus, name="aio-caller")
        try:

            async def add(a: int, b: int) -> int:
                return a + b

            await worker.serve("math", {"add": add}, schemas={"add": {"params": ADD_PARAMS, "result": {"type": "integer"}}})
            assert await caller.call("math", "add", {"a": 2, "b": 3}) == 5
            with pytest.raises(plexus.InvalidParams):
                await caller.call("math", "add", {"a": 2})
        finally:
            await caller.close()
            await worker.close()

    asyncio.run(asyncio.wait_for(main(), 30))
