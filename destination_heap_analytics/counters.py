"""The counts of one sync: per input line, per stream chunk, per batch delivery, per transform,
per stream (route) and in total.

At the bottom of the import graph (it imports nothing of the connector but names for type
annotations), so every stage can count without importing another stage: the reader, the
transform, the sending threads and the log all share these classes. Only counts, reasons, row
numbers and stream or column names are kept here, never record contents. The lines that report
them are written by `sync.sync_log`.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from destination_heap_analytics.config.settings import ApiType, StreamId
    from destination_heap_analytics.heap.client import Receipt


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
class ChunkTally:
    """The records of one stream since its last state (`destinationStats`): counted by the main
    thread as they arrive (`received`, `invalid`) and as their batches are acknowledged
    (`refused`)."""

    received: int = 0
    invalid: int = 0
    refused: int = 0


@dataclass
class TransformStats:
    """Data-quality counts the final summary reports (values were changed, not dropped silently)."""

    truncated_values: int = 0
    dropped_properties: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped_properties[reason] = self.dropped_properties.get(reason, 0) + 1


MAX_REJECTION_REASONS = 20
"""Distinct Heap messages counted one by one in the summary; later ones share one entry, so an
answer that varies with each item (an echo of it) cannot grow the counter or the summary line."""

OTHER_REJECTION_REASONS = f"a message beyond the first {MAX_REJECTION_REASONS} distinct ones"


@dataclass(frozen=True)
class Rejection:
    row: int
    status: int
    message: str


@dataclass(frozen=True)
class Accepted:
    """A request Heap accepted with a receipt (a user deletion): its id and its item count."""

    receipt: Receipt
    items: int


@dataclass
class DeliveryStats:
    """Counters shared by the sending threads; every update holds the lock."""

    delivered: int = 0
    planned_items: int = 0
    planned_requests: int = 0
    requests: int = 0
    retries: int = 0
    rejected: Counter = field(default_factory=Counter)
    retry_reasons: Counter = field(default_factory=Counter)
    receipts: int = 0
    """Requests Heap accepted with a receipt (deletion requests)."""
    _new_rejections: list[Rejection] = field(default_factory=list)
    _new_receipts: list[Accepted] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def rejected_counts(self) -> Counter:
        """A copy of `rejected`, taken under the lock: the sending threads may add a reason
        while the main thread reports (a dict that grows while it is read is an error)."""
        with self._lock:
            return Counter(self.rejected)

    def retry_counts(self) -> Counter:
        """A copy of `retry_reasons`, taken under the lock, for the same reason."""
        with self._lock:
            return Counter(self.retry_reasons)

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def count_retry(self, reason: str) -> None:
        with self._lock:
            self.retries += 1
            self.retry_reasons[reason] += 1

    def count_delivered(self, n: int) -> None:
        with self._lock:
            self.delivered += n

    def count_planned(self, n: int) -> None:
        """A dry run's batch: what would have been one request of `n` items."""
        with self._lock:
            self.planned_items += n
            self.planned_requests += 1

    def count_rejection(self, rejection: Rejection) -> None:
        with self._lock:
            reason = f"HTTP {rejection.status}: {rejection.message}"
            if reason not in self.rejected and len(self.rejected) >= MAX_REJECTION_REASONS:
                rejection = replace(rejection, message=OTHER_REJECTION_REASONS)
                reason = f"HTTP {rejection.status}: {rejection.message}"
            self.rejected[reason] += 1
            self._new_rejections.append(rejection)

    def count_receipt(self, accepted: Accepted) -> None:
        with self._lock:
            self.receipts += 1
            self._new_receipts.append(accepted)

    def take_new_receipts(self) -> list[Accepted]:
        """Receipts since the last call, in the order Heap answered, for the main thread."""
        with self._lock:
            taken, self._new_receipts = self._new_receipts, []
        return taken

    def take_new_rejections(self) -> list[Rejection]:
        """Rejections since the last call, in row order (probes find them in no particular
        order), for the main thread to log."""
        with self._lock:
            taken, self._new_rejections = self._new_rejections, []
        return sorted(taken, key=lambda rejection: rejection.row)


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
        return _sum(route.delivery.rejected_counts() for route in self.routes)

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
        return _sum(route.delivery.retry_counts() for route in self.routes)

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
