"""CPU per item of `Pacer.acquire` alone, with pacing on as for track bulk (the default).

Batches of 1,000 items go through one Pacer (Heap's 1,000/min per identity, and a per-app limit
of 10M a minute) on a fake clock that moves 6 ms per batch, plus the sleeps the per-app spacing
asks for (they only move the clock), so the per-identity counts see their time windows turn over.
Two traffic shapes: identities cycling over 5,000 (the benchmark input), and every item a new
identity. Only the `acquire` calls are timed (process CPU time); the batches are built beforehand.

Usage: python bench/pacer_cpu.py [--items 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from destination_heap_analytics.config.settings import Pacing, RateLimit  # noqa: E402
from destination_heap_analytics.delivery.pacer import Pacer  # noqa: E402

BATCH = 1_000
SECONDS_PER_BATCH = 0.006
PACING = Pacing(per_app=RateLimit(10_000_000, 60.0), per_identity=RateLimit(1_000, 60.0))


def batches(items: int, identities: int | None) -> list[list[dict]]:
    """`identities` None: every item its own identity."""
    names = [f"user{n if identities is None else n % identities}@example.com" for n in range(items)]
    return [[{"identity": name} for name in names[i : i + BATCH]] for i in range(0, items, BATCH)]


class SteppedClock:
    """Time that moves only when told: a sleep (the even spacing of the per-app limit, a
    fraction of a batch's 6 ms) passes at once."""

    def __init__(self) -> None:
        self.time = 1000.0

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> bool:
        self.time += seconds
        return True

    def cancel(self) -> None:
        pass


def cpu_per_item(work: list[list[dict]]) -> float:
    """µs of process CPU per item for acquiring every batch of `work` once."""
    clock = SteppedClock()
    pacer = Pacer(PACING, clock)
    started = time.process_time()
    for batch in work:
        pacer.acquire(batch)
        clock.time += SECONDS_PER_BATCH
    elapsed = time.process_time() - started
    return elapsed / sum(len(batch) for batch in work) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    for label, identities in (("5,000 cycling identities", 5_000), ("all distinct", None)):
        work = batches(args.items, identities)
        best = min(cpu_per_item(work) for _ in range(args.repeat))
        print(f"{label}: {best:.3f} µs CPU per item ({args.items:,} items)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
