"""Counts for one sync: per input, per stream (route) and in total.

Only counts, reasons, row numbers and stream or column names are kept here, never record
contents. The lines that report them are written by `sync_log`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from destination_heap_analytics.config import ApiType, StreamId
from destination_heap_analytics.delivery import DeliveryStats
from destination_heap_analytics.transformer import TransformStats


@dataclass
class InputStats:
    """What the input reader saw before any message reached `write`."""

    skipped_lines: Counter = field(default_factory=Counter)
    repaired_lines: int = 0
    """Lines whose lone UTF-16 surrogates were replaced by U+FFFD."""

    def skip(self, reason: str) -> None:
        self.skipped_lines[reason] += 1

    @property
    def unparseable_lines(self) -> int:
        return self.skipped_lines.total()


@dataclass
class RouteStats:
    """One stream's records: read, invalid by reason; its deliveries and transform changes."""

    stream: StreamId
    api_type: ApiType
    delivery: DeliveryStats = field(default_factory=DeliveryStats)
    transform: TransformStats = field(default_factory=TransformStats)
    records: int = 0
    invalid: Counter = field(default_factory=Counter)
    shapes: list[str] = field(default_factory=list)
    """A dry run's description of the stream's first items (names and types, never values)."""

    @property
    def name(self) -> str:
        namespace, name = self.stream
        return f"{namespace}.{name}" if namespace else name


@dataclass
class SyncStats:
    input: InputStats
    started: float
    messages: int = 0
    records: int = 0
    ignored_streams: Counter = field(default_factory=Counter)
    """Records of streams the configured catalog does not name, by stream name."""
    unmapped_streams: Counter = field(default_factory=Counter)
    """Records of catalog streams with no mapping (no `streams` entry, no top-level `api`)."""
    states_emitted: int = 0
    routes: list[RouteStats] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        return sum(route.delivery.delivered for route in self.routes)

    @property
    def rejected(self) -> Counter:
        return _sum(route.delivery.rejected for route in self.routes)

    @property
    def invalid(self) -> Counter:
        return _sum(route.invalid for route in self.routes)

    @property
    def requests(self) -> int:
        return sum(route.delivery.requests for route in self.routes)

    @property
    def planned_items(self) -> int:
        return sum(route.delivery.planned_items for route in self.routes)

    @property
    def planned_requests(self) -> int:
        return sum(route.delivery.planned_requests for route in self.routes)

    @property
    def retry_reasons(self) -> Counter:
        return _sum(route.delivery.retry_reasons for route in self.routes)

    @property
    def truncated_values(self) -> int:
        return sum(route.transform.truncated_values for route in self.routes)

    @property
    def dropped_properties(self) -> Counter:
        return _sum(Counter(route.transform.dropped_properties) for route in self.routes)


def _sum(counters) -> Counter:
    total: Counter = Counter()
    for counter in counters:
        total.update(counter)
    return total
