"""States go back to Airbyte only when Heap has acknowledged every record before them.

A STREAM state waits for the records of its own stream; a GLOBAL or legacy state waits for the
records of every stream. Order is kept where the platform needs it: the states of one stream
leave in input order, and a GLOBAL or legacy state never overtakes, nor is overtaken by, any
other state. STREAM states of different streams may leave in another order than they came: the
platform tracks states per stream (its `StreamStatsTracker` and `StreamStateAggregator`), as it
does for Airbyte's own asynchronous destinations, so a stream that is waiting on a slow batch
does not hold back the checkpoints of the others.

Each state reports its chunk in `destinationStats`: the records that reached the destination
for it since the previous state of the same scope, split into loaded (or deliberately ignored)
and rejected (invalid, or refused by Heap). The gate asks each route's loader how far it has
acknowledged; it neither sends nor logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from destination_heap_analytics.delivery import ChunkTally
from destination_heap_analytics.loader import BatchLoader
from destination_heap_analytics.state_message import (
    DestinationStats,
    EmittedState,
    StateMessage,
)


def destination_stats(tallies: list[ChunkTally]) -> DestinationStats:
    rejected = sum(t.invalid + t.refused for t in tallies)
    return DestinationStats(sum(t.received for t in tallies) - rejected, rejected)


Waits = list[tuple[BatchLoader, int]]
"""What a held state waits for: each loader's acknowledgement up to a batch sequence."""

EVERY_STREAM = object()
"""The ordering key of GLOBAL and legacy states."""


@dataclass(eq=False)
class HeldState:
    state: StateMessage
    waits: Waits
    tallies: list[ChunkTally]
    key: object = field(default=EVERY_STREAM)
    """The stream of a STREAM state (its states keep their order); EVERY_STREAM otherwise."""

    def ready(self, raise_errors: bool) -> bool:
        return all(loader.acknowledged(raise_errors) >= seq for loader, seq in self.waits)


class StateGate:
    def __init__(self, withhold: bool = False) -> None:
        """`withhold`: a dry run, which must emit no state at all, so that the next real sync
        starts from the same place; such states are only counted."""
        self._held: list[HeldState] = []
        self._withhold = withhold
        self.withheld = 0

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def hold(self, held: HeldState) -> None:
        if self._withhold:
            self.withheld += 1
            return
        self._held.append(held)

    def release(self, raise_errors: bool = True) -> list[EmittedState]:
        """The lines of the states whose records are all acknowledged, in input order among
        those that may leave (see the module docstring). Raises the first fatal error of any
        batch unless `raise_errors` is False (the sync is ending on that error, and the states
        that are ready must still go out)."""
        released: list[EmittedState] = []
        waiting: list[HeldState] = []
        blocked: set[object] = set()
        for held in self._held:
            if EVERY_STREAM in blocked or (held.key is EVERY_STREAM and waiting):
                waiting.append(held)
                blocked.add(EVERY_STREAM)
            elif held.key in blocked or not held.ready(raise_errors):
                waiting.append(held)
                blocked.add(held.key)
            else:
                released.append(held.state.emitted(destination_stats(held.tallies)))
        self._held = waiting
        return released
