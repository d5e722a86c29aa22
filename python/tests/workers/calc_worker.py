"""A worker process for the tests: serves `math` (or the name in argv[1]) until killed.

With `--no-reconnect` it connects with `reconnect=False`, so losing the broker ends it with an error.
"""

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
    args = [arg for arg in sys.argv[1:] if arg != "--no-reconnect"]
    name = args[0] if args else "math"
    with plexus.connect(name=f"calc_worker:{name}", reconnect="--no-reconnect" not in sys.argv) as bus:
        bus.serve(name, Calculator(bus))
        bus.run_forever()


if __name__ == "__main__":
    main()
