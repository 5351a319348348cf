"""States go back to Airbyte only when Heap has acknowledged every record before them.

A STREAM state waits for the records of its own stream; a GLOBAL or legacy state waits for the
records of every stream. States leave in input order: a ready state never overtakes one that is
still waiting. The gate only asks each route's loader how far it has acknowledged; it neither
sends nor logs.
"""

from __future__ import annotations

from collections import deque

from airbyte_cdk.models import AirbyteMessage, AirbyteStateMessage, AirbyteStateType

from destination_heap_analytics.config import StreamId
from destination_heap_analytics.loader import BatchLoader

Waits = list[tuple[BatchLoader, int]]
"""What a held state waits for: each loader's acknowledgement up to a batch sequence."""


def stream_of(state: AirbyteStateMessage) -> StreamId | None:
    """The stream a STREAM state belongs to; None for GLOBAL and legacy states."""
    if state.type == AirbyteStateType.STREAM and state.stream is not None:
        descriptor = state.stream.stream_descriptor
        return (descriptor.namespace, descriptor.name)
    return None


class StateGate:
    def __init__(self, withhold: bool = False) -> None:
        """`withhold`: a dry run, which must emit no state at all, so that the next real sync
        starts from the same place; such states are only counted."""
        self._held: deque[tuple[Waits, AirbyteMessage]] = deque()
        self._withhold = withhold
        self.withheld = 0

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def hold(self, message: AirbyteMessage, waits: Waits) -> None:
        if self._withhold:
            self.withheld += 1
            return
        self._held.append((waits, message))

    def release(self) -> list[AirbyteMessage]:
        """The states whose records are all acknowledged, in input order. Raises the first
        fatal error of any batch they wait for."""
        released = []
        held = self._held
        while held and all(loader.acknowledged() >= seq for loader, seq in held[0][0]):
            released.append(held.popleft()[1])
        return released


class StateCounter:
    """Records seen per state chunk, for `destinationStats.recordCount`.

    `count` runs once per record, so it is a single dict update; the chunk of a GLOBAL state is
    derived from the running total instead of being counted separately.
    """

    def __init__(self) -> None:
        self._per_stream: dict[StreamId, int] = {}
        self._total_at_last_global = 0

    def count(self, stream: StreamId) -> None:
        per_stream = self._per_stream
        per_stream[stream] = per_stream.get(stream, 0) + 1

    def take(self, state: AirbyteStateMessage, records_so_far: int) -> int:
        stream = stream_of(state)
        if stream is not None:
            return self._per_stream.pop(stream, 0)
        taken = records_so_far - self._total_at_last_global
        self._total_at_last_global = records_so_far
        self._per_stream.clear()
        return taken
