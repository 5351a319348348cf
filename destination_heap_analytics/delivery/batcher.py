"""Batching for one route: process an item, process a batch, drain on state.

Full batches go to the shared pool of sending threads (`senders.py`); one batch per route is
filling, so memory does not grow with the input. Each batch gets a sequence number;
`acknowledged()` is the highest number up to which every batch is finished (every item
delivered, or refused and counted) and settled (none of its refusals can still help stop the sync):
the words of docs/architecture.md's glossary. The state gate releases a state once that
watermark reaches the last batch submitted before it, so no state goes out early, and the flow
of records does not stop at each state.

User and account properties are last-write-wins in Heap, so for each API type the records of one
identity (or account) reach Heap in input order, across every stream that sends to it
(`OrderingKeys`, shared by the batchers of that API type): two batches sharing a key are never in
flight together (the later waits for the earlier, retries included), and a record whose key is
in another stream's filling batch first sends that batch, so batches sharing a key are submitted
in input order too. Events need no such care; each carries its own timestamp.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

from destination_heap_analytics.counters import ChunkTally
from destination_heap_analytics.delivery.batch_delivery import Batch
from destination_heap_analytics.delivery.senders import SenderPool


class OrderingKeys:
    """The ordering keys of one API type's batches, shared by the batchers of every route that
    sends to it: which batcher's filling batch holds each key (changed on the main thread only),
    and the keys of each batch in flight (changed under the pool's lock)."""

    def __init__(self, key: Callable[[dict], str]) -> None:
        self.key = key
        self.filling: dict[str, Batcher] = {}
        self.running: dict[Future, frozenset[str]] = {}

    def conflict(self, keys: frozenset[str]) -> bool:
        """Does a batch in flight share a key with these? (At most max_concurrent to check.)"""
        return bool(keys) and any(not keys.isdisjoint(k) for k in self.running.values())

    def start(self, batch: Future, keys: frozenset[str]) -> None:
        if keys:
            self.running[batch] = keys

    def end(self, batch: Future) -> None:
        self.running.pop(batch, None)


_NO_ORDERING = OrderingKeys(str)
"""For batchers without an ordering key: their batches have no keys, so nothing is kept."""


class Batcher:
    """A route's batches: takes its items one by one, hands each full batch to the pool, and
    knows how far its batches are acknowledged. It never sends or waits on its own."""

    def __init__(
        self,
        deliver: Callable[[Batch], None],
        batch_size: int,
        pool: SenderPool,
        ordering: OrderingKeys | None = None,
        settled: Callable[[Batch], bool] = lambda batch: True,
    ) -> None:
        """`deliver` runs in a sending thread and raises only fatal errors; the records of one
        `ordering` key are delivered one batch after the other, in input order, whichever
        batcher sharing `ordering` they came through. A batch is acknowledged once it and
        every earlier one are finished and `settled(batch)`; `settle_all` settles them all at
        the end of the input, and when the sync stops for any reason but Heap refusing most
        records."""
        self._deliver = deliver
        self._batch_size = batch_size
        self._pool = pool
        self._ordering = ordering
        self._settled = settled
        if ordering is not None:
            self.process_item = self._process_ordered_item  # type: ignore[method-assign]
        self._items: list[dict] = []
        self._rows: list[int] = []
        # Batches not yet acknowledged, oldest first (finished ones wait here for older ones).
        self._unacknowledged: deque[tuple[Batch, Future]] = deque()
        self._submitted_seq = 0
        self._acknowledged_seq = 0
        self.tally = ChunkTally()
        """The chunk the records being batched belong to (replaced at each state)."""

    def process_item(self, item: dict, row: int) -> None:
        self._items.append(item)
        self._rows.append(row)
        if len(self._items) >= self._batch_size:
            self.process_batch()

    def _process_ordered_item(self, item: dict, row: int) -> None:
        """`process_item` with an ordering key: another batcher's filling batch holding the
        key goes first, so that its earlier record reaches Heap first."""
        ordering = self._ordering
        key = ordering.key(item)
        holder = ordering.filling.get(key)
        if holder is not self:
            if holder is not None:
                holder.process_batch()
            ordering.filling[key] = self
        Batcher.process_item(self, item, row)

    def process_batch(self) -> None:
        """Hand the filling batch to a sending thread, waiting for a free one if all are busy."""
        if not self._items:
            return
        keys = self._take_keys()
        batch = Batch(self._submitted_seq + 1, self._items, self._rows, self.tally)
        ordering = self._ordering or _NO_ORDERING
        future = self._pool.submit(
            lambda: self._deliver(batch),
            may_start=lambda: not ordering.conflict(keys),
            on_start=lambda started: ordering.start(started, keys),
            on_end=ordering.end,
        )
        self._submitted_seq = batch.seq
        self._items, self._rows = [], []
        self._unacknowledged.append((batch, future))
        self._advance()

    def drain(self) -> int:
        """Send what is pending; returns the sequence a state must wait for."""
        self.process_batch()
        return self._submitted_seq

    def acknowledged(self, raise_errors: bool = True) -> int:
        """Advance over finished and settled batches in order; raises the first fatal error of
        any batch (unless the sync is already ending on it), and never moves past a failed one."""
        if raise_errors:
            self._pool.raise_fatal_error()
        self._advance()
        return self._acknowledged_seq

    def sending_before(self, seq: int) -> bool:
        """Is a batch up to `seq` still being sent (queued or in flight), rather than finished
        and waiting for a refusal to settle? (Call after `acknowledged`.)"""
        for batch, future in self._unacknowledged:
            if batch.seq > seq:
                return False
            if not future.done():
                return True
        return False

    def settle_all(self, raise_errors: bool = True) -> None:
        """Every finished batch is settled: at the end of the input (raising the first fatal
        error, if any), or when a sync stops for a reason other than Heap refusing most
        records, whose refusals can then no longer be part of such a failure."""
        if raise_errors:
            self._pool.raise_fatal_error()
        self._advance(settle_all=True)

    def _advance(self, settle_all: bool = False) -> None:
        """Move the watermark over batches finished (and settled) in order, stopping at a
        failed one (its error is raised by the next wait or acknowledgement)."""
        unacknowledged = self._unacknowledged
        while unacknowledged:
            batch, future = unacknowledged[0]
            if not future.done() or future.cancelled() or future.exception() is not None:
                return
            if not (settle_all or self._settled(batch)):
                return
            unacknowledged.popleft()
            batch.tally.refused += batch.refused
            self._acknowledged_seq = batch.seq

    def _take_keys(self) -> frozenset[str]:
        """The filling batch's ordering keys, which it no longer holds once submitted."""
        ordering = self._ordering
        if ordering is None:
            return frozenset()
        keys = frozenset(map(ordering.key, self._items))
        for key in keys:
            del ordering.filling[key]
        return keys
