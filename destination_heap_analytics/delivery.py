"""Deliver one batch to Heap: pace, send, retry transient failures, isolate rejected items.

Runs in the sending threads. A batch either ends fully accounted for (every item delivered or
rejected-and-counted) or raises a fatal error that ends the sync: configuration errors,
exhausted retries, and Heap refusing most records (`rejection_guard`). Nothing here logs;
outcomes are counted in `DeliveryStats` and read by the main thread, which owns all output.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field, replace

from destination_heap_analytics.client import HeapClient, HeapRejected, HeapTransientError
from destination_heap_analytics.pacer import Pacer
from destination_heap_analytics.rejection_guard import RejectionGuard
from destination_heap_analytics.retry import RetryPolicy, call_with_retries
from destination_heap_analytics.sync_clock import Clock


@dataclass
class ChunkTally:
    """The records of one stream since its last state (`destinationStats`): counted by the main
    thread as they arrive (`received`, `invalid`) and as their batches are acknowledged
    (`refused`)."""

    received: int = 0
    invalid: int = 0
    refused: int = 0


@dataclass
class Batch:
    """Items in input order with their row numbers (1-based record counts), for reporting.

    `last_refusal` is the rejection guard's position of the batch's last refused record, set by
    the sending thread; the states after the batch wait until the guard has settled it.
    `refused` counts the batch's items Heap refused, added to its chunk's `tally` once the
    batch is acknowledged.
    """

    seq: int
    items: list[dict]
    rows: list[int]
    tally: ChunkTally = field(default_factory=ChunkTally)
    last_refusal: int | None = None
    refused: int = 0


MAX_REJECTION_REASONS = 20
"""Distinct Heap messages counted one by one in the summary; later ones share one entry, so an
answer that varies with each item (an echo of it) cannot grow the counter or the summary line."""

OTHER_REJECTION_REASONS = f"a message beyond the first {MAX_REJECTION_REASONS} distinct ones"


@dataclass(frozen=True)
class Rejection:
    row: int
    status: int
    message: str


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
    _new_rejections: list[Rejection] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

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

    def take_new_rejections(self) -> list[Rejection]:
        """Rejections since the last call, for the main thread to log."""
        with self._lock:
            taken, self._new_rejections = self._new_rejections, []
        return taken


class BatchDelivery:
    def __init__(
        self,
        client: HeapClient,
        pacer: Pacer,
        policy: RetryPolicy,
        stats: DeliveryStats,
        clock: Clock,
        guard: RejectionGuard | None = None,
    ) -> None:
        """`clock` times retries and wakes them when the sync is cancelled; the guard is the
        route's, shared by its batches."""
        self._client = client
        self._pacer = pacer
        self._policy = policy
        self._stats = stats
        self._clock = clock
        self._guard = guard or RejectionGuard()

    def deliver(self, batch: Batch) -> None:
        if not self._send(batch, batch.items, batch.rows):
            self._isolate(batch, batch.items, batch.rows)

    def settled(self, batch: Batch) -> bool:
        """May the states after this (finished) batch go out? Not while one of its refusals
        could still turn out to be part of a sync Heap mostly refuses."""
        return batch.last_refusal is None or self._guard.settled(batch.last_refusal)

    def _isolate(self, batch: Batch, items: list[dict], rows: list[int]) -> None:
        """Split a refused group in halves until each bad item stands alone.

        Depth first, left half first: the good items of a batch reach Heap in input order, which
        last-write-wins properties need.
        """
        if len(items) == 1:
            return
        middle = len(items) // 2
        for half_items, half_rows in (
            (items[:middle], rows[:middle]),
            (items[middle:], rows[middle:]),
        ):
            if not self._send(batch, half_items, half_rows):
                self._isolate(batch, half_items, half_rows)

    def _send(self, batch: Batch, items: list[dict], rows: list[int]) -> bool:
        """True when Heap accepted the items; a refused single item is counted as rejected."""
        self._guard.check()
        try:
            self._send_with_retries(items)
        except HeapRejected as rejected:
            if len(items) == 1:
                self._stats.count_rejection(Rejection(rows[0], rejected.status, rejected.message))
                batch.refused += 1
                batch.last_refusal = self._guard.refused(str(rejected))
                self._guard.check()
            return False
        self._stats.count_delivered(len(items))
        self._guard.accepted(len(items))
        return True

    def _send_with_retries(self, items: list[dict]) -> None:
        body = self._client.body(items)

        def attempt() -> None:
            self._stats.count_request()
            self._client.post(body)

        call_with_retries(
            attempt,
            self._policy,
            self._clock,
            on_retry=self._on_retry,
            wait_turn=lambda: self._pacer.acquire(items),
        )

    def _on_retry(self, error: HeapTransientError, delay: float) -> None:
        self._stats.count_retry(str(error))
