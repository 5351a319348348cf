"""Deliver one batch to Heap: pace, send, retry transient failures, isolate rejected items.

Runs in the sending threads. A batch either finishes (every item delivered, or refused and
counted) or raises a fatal error that ends the sync: configuration errors,
exhausted retries, and Heap refusing most records (`rejection_guard`). Nothing here logs;
outcomes are counted in `DeliveryStats` and read by the main thread, which owns all output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from destination_heap_analytics.counters import Accepted, ChunkTally, DeliveryStats, Rejection
from destination_heap_analytics.delivery.pacer import Pacer
from destination_heap_analytics.delivery.rejection_guard import (
    Judgement,
    RejectionGuard,
    probe_positions,
)
from destination_heap_analytics.delivery.retry import RetryPolicy, call_with_retries
from destination_heap_analytics.heap.client import (
    HeapClient,
    HeapRejected,
    HeapTransientError,
    Receipt,
)
from destination_heap_analytics.sync_clock import Clock


@dataclass
class Batch:
    """Items in input order with their row numbers (1-based record counts), for reporting.

    `last_refusal_position` is the rejection guard's position of the batch's refusals, set by
    the sending thread when the batch is finished (None when nothing was refused); the states
    after the batch wait until the guard has settled it.
    `refused` counts the batch's items Heap refused, added to its chunk's `tally` once the
    batch is acknowledged.
    """

    seq: int
    items: list[dict]
    rows: list[int]
    tally: ChunkTally = field(default_factory=ChunkTally)
    last_refusal_position: int | None = None
    refused: int = 0


class BatchDelivery:
    """Delivers batches of one route; the rejection guard is the sync's, shared by all routes.

    A refused batch is first probed (`rejection_guard.probe_positions`: single items at spread
    positions, so the guard's evidence represents the batch whatever the order of its bad
    rows), then the rest is split depth first, left half first, or, when at least half of the
    probes were refused, sent item by item. Items therefore reach Heap in input order per
    ordering key: a probe is the first item of its key in the batch, and the rest keeps its
    order, which last-write-wins properties need.
    """

    def __init__(
        self,
        client: HeapClient,
        pacer: Pacer,
        policy: RetryPolicy,
        stats: DeliveryStats,
        clock: Clock,
        guard: RejectionGuard | None = None,
        ordering_key: Callable[[dict], str] | None = None,
        keep_refused: Callable[[int, dict, HeapRejected], None] | None = None,
    ) -> None:
        """`clock` times retries and wakes them when the sync is cancelled; `ordering_key`
        names the item field whose input order must hold (None for events); `keep_refused`
        receives each refused item with its row (the rejected-records bucket), in the sending
        thread, before the batch can be acknowledged."""
        self._keep_refused = keep_refused
        self._client = client
        self._pacer = pacer
        self._policy = policy
        self._stats = stats
        self._clock = clock
        self._guard = guard or RejectionGuard()
        self._ordering_key = ordering_key

    def deliver(self, batch: Batch) -> None:
        refusal = self._post(batch.items)
        if refusal is None:
            self._guard.accepted(len(batch.items))
            return
        if len(batch.items) == 1:
            self._count_rejection(batch, 0, refusal)
        judgement = self._guard.refused(len(batch.items), str(refusal))
        if len(batch.items) > 1:
            self._probe_and_split(batch, judgement)
        batch.last_refusal_position = judgement.finished()

    def settled(self, batch: Batch) -> bool:
        """Is this (finished) batch settled? Not while one of its refusals could still turn out
        to be part of a sync Heap mostly refuses; until then it is not acknowledged, and the
        states after it wait."""
        return batch.last_refusal_position is None or self._guard.settled(
            batch.last_refusal_position
        )

    def _probe_and_split(self, batch: Batch, judgement: Judgement) -> None:
        probes = probe_positions(batch.items, self._ordering_key, seed=batch.rows[0])
        for index in probes:
            self._send(batch, [index], judgement, probe=True)
        probed = set(probes)
        rest = [index for index in range(len(batch.items)) if index not in probed]
        if judgement.mostly_refused:  # halves would cost about two requests per item
            for index in rest:
                self._send(batch, [index], judgement)
        elif rest and not self._send(batch, rest, judgement):
            self._split(batch, rest, judgement)

    def _split(self, batch: Batch, group: list[int], judgement: Judgement) -> None:
        """Split a refused group in halves until each bad item stands alone; depth first, left
        half first, so the good items reach Heap in input order."""
        if len(group) == 1:
            return
        middle = len(group) // 2
        for half in (group[:middle], group[middle:]):
            if not self._send(batch, half, judgement):
                self._split(batch, half, judgement)

    def _send(
        self, batch: Batch, group: list[int], judgement: Judgement, probe: bool = False
    ) -> bool:
        """Send the batch's items at `group`; True when Heap accepted them. A refused single
        item is counted as rejected; a probe's answer goes to the guard either way."""
        refusal = self._post([batch.items[index] for index in group])
        if refusal is not None and len(group) == 1:
            self._reject(batch, group[0], refusal, judgement, probe)
        elif probe:
            judgement.probed(refused=refusal is not None)
        return refusal is None

    def _reject(
        self,
        batch: Batch,
        index: int,
        refusal: HeapRejected,
        judgement: Judgement,
        probe: bool = False,
    ) -> None:
        self._count_rejection(batch, index, refusal)
        if probe:
            judgement.probed(refused=True, reason=str(refusal))
        else:
            judgement.refused_alone(str(refusal))

    def _count_rejection(self, batch: Batch, index: int, refusal: HeapRejected) -> None:
        self._stats.count_rejection(Rejection(batch.rows[index], refusal.status, refusal.message))
        batch.refused += 1
        if self._keep_refused is not None:
            self._keep_refused(batch.rows[index], batch.items[index], refusal)

    def _post(self, items: list[dict]) -> HeapRejected | None:
        """One request of `items` (retried through transient failures); Heap's refusal, or
        None when it accepted them (counted as delivered)."""
        self._guard.check()
        try:
            self._send_with_retries(items)
        except HeapRejected as rejected:
            return rejected
        self._stats.count_delivered(len(items))
        return None

    def _send_with_retries(self, items: list[dict]) -> None:
        """The body is built once: every attempt sends the same bytes, so a retried deletion
        can only name the users it named the first time."""
        body = self._client.body(items)

        def attempt() -> Receipt | None:
            self._stats.count_request()
            return self._client.post(body)

        receipt = call_with_retries(
            attempt,
            self._policy,
            self._clock,
            on_retry=self._on_retry,
            wait_turn=lambda: self._pacer.acquire(items),
        )
        if receipt is not None:
            self._stats.count_receipt(Accepted(receipt, len(items)))

    def _on_retry(self, error: HeapTransientError, delay: float) -> None:
        self._stats.count_retry(str(error))
