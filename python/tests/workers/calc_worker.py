"""A worker process for the tests: serves `math` (or the name in argv[1]) until killed."""

from __future__ import annotations

import sys
import time
from typing import Dict

import plexus


class Calculator:
    """`add` answers at once; `slow` announces itself on topic `worker.busy`, then sleeps."""

    def __init__(self, bus: plexus.Client) -> None:
        self._bus = bus

    def add(self, a: int, b: int) -> Dict[str, int]:
        """The sum of `a` and `b` as `{"sum": ...}`."""
        return {"sum": a + b}

    def slow(self, seconds: float) -> str:
        """Publishes `worker.busy`, sleeps `seconds`, and answers "done"."""
        self._bus.publish("worker.busy", {"seconds": seconds})
        time.sleep(seconds)
        return "done"


def main() -> None:
    """Serves until the connection ends."""
    name = sys.argv[1] if len(sys.argv) > 1 else "math"
    with plexus.connect(name=f"calc_worker:{name}") as bus:
        bus.serve(name, Calculator(bus))
        bus.run_forever()


if __name__ == "__main__":
    main()
