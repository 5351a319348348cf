"""States go back to Airbyte only when every batch of the records before them is acknowledged.

A STREAM state waits for the records of its own stream; a GLOBAL or legacy state waits for the
records of every stream. States leave in input order, with one exception: a STREAM state may
overtake the states of another stream that wait for a refusal to settle (its records' batches are
all finished, but a refusal among them could still turn out to be the start of a sync Heap mostly
refuses, which can take a thousand more records of any stream to tell). The states of one stream
always keep their order, and a GLOBAL or legacy state never overtakes, nor is overtaken by, any
other state. The exception is safe because the platform tracks states per stream (its
`StreamStatsTracker` and `StreamStateAggregator`), as it does for Airbyte's own asynchronous
destinations; keeping input order otherwise keeps the output as 0.3.0 gave it while batches are
merely in flight.

Each state reports its chunk in `destinationStats`: the records that reached the destination
for it since the previous state of the same scope, split into loaded (or deliberately ignored)
and rejected (invalid, or refused by Heap). The gate asks each route's batcher how far it has
acknowledged; it neither sends nor logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from destination_heap_analytics.counters import ChunkTally
from destination_heap_analytics.delivery.batcher import Batcher
from destination_heap_analytics.protocol.state_message import (
    DestinationStats,
    EmittedState,
    StateMessage,
)


def destination_stats(tallies: list[ChunkTally]) -> DestinationStats:
    rejected = sum(t.invalid + t.refused for t in tallies)
    return DestinationStats(sum(t.received for t in tallies) - rejected, rejected)


Waits = list[tuple[Batcher, int]]
"""What a held state waits for: each batcher's acknowledgement up to a batch sequence."""

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
        return all(batcher.acknowledged(raise_errors) >= seq for batcher, seq in self.waits)

    def sending(self) -> bool:
        """Does it wait for a batch still being sent (not only for a refusal to settle)?"""
        return any(batcher.sending_before(seq) for batcher, seq in self.waits)


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

    def release(self, ending: bool = False) -> list[EmittedState]:
        """The lines of the states whose records are all acknowledged, in input order among
        those that may leave (see the module docstring). Raises the first fatal error of any
        batch, unless the sync is `ending` (on that error, or on a signal): then every state
        whose records are acknowledged goes out, past the states of other streams whose
        batches will never finish, since acknowledged progress must not be thrown away."""
        released: list[EmittedState] = []
        waiting: list[HeldState] = []
        blocked: set[object] = set()
        for held in self._held:
            if EVERY_STREAM in blocked or (held.key is EVERY_STREAM and waiting):
                waiting.append(held)
                blocked.add(EVERY_STREAM)
            elif held.key not in blocked and held.ready(raise_errors=not ending):
                released.append(held.state.emitted(destination_stats(held.tallies)))
            else:
                waiting.append(held)
                blocked.add(held.key)
                if held.key is EVERY_STREAM or (held.sending() and not ending):
                    blocked.add(EVERY_STREAM)  # only a settling refusal may be overtaken
        self._held = waiting
        return released
