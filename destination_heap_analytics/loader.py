"""Batching for one route: process a record, process a batch, drain on state.

Full batches go to the shared pool of sending threads (`senders.py`); one batch per route is
filling, so memory does not grow with the input. Each batch gets a sequence number;
`acknowledged()` is the highest number up to which every batch is fully accounted for
(delivered, or rejected and counted, and settled). A state is released once that watermark
passes the last batch submitted before it, which keeps states in input order and never early,
without stopping the flow of records at each state.

User and account properties are last-write-wins in Heap, so two batches that touch the same
identity (or account) are never in flight together: the later one waits for the earlier one,
retries included. Events need no such care; each carries its own timestamp.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

from destination_heap_analytics.delivery import Batch, ChunkTally
from destination_heap_analytics.senders import SenderPool


class BatchLoader:
    def __init__(
        self,
        deliver: Callable[[Batch], None],
        batch_size: int,
        pool: SenderPool,
        ordering_key: Callable[[dict], str] | None = None,
        settled: Callable[[Batch], bool] = lambda batch: True,
    ) -> None:
        """`deliver` runs in a sending thread and raises only fatal errors; batches sharing an
        `ordering_key` value are delivered one after the other, in input order. A finished
        batch counts as acknowledged only once `settled(batch)`, or at the end of the input."""
        self._deliver = deliver
        self._batch_size = batch_size
        self._pool = pool
        self._ordering_key = ordering_key
        self._settled = settled
        self._items: list[dict] = []
        self._rows: list[int] = []
        # Batches not yet acknowledged, oldest first (finished ones wait here for older ones).
        self._unacknowledged: deque[tuple[Batch, Future]] = deque()
        self._submitted_seq = 0
        self._acknowledged_seq = 0
        self._keys_running: dict[Future, frozenset[str]] = {}  # under the pool's lock
        self.tally = ChunkTally()
        """The chunk the records being batched belong to (replaced at each state)."""

    def process_record(self, item: dict, row: int) -> None:
        self._items.append(item)
        self._rows.append(row)
        if len(self._items) >= self._batch_size:
            self.process_batch()

    def process_batch(self) -> None:
        """Hand the filling batch to a sending thread, waiting for a free one if all are busy."""
        if not self._items:
            return
        keys = self._batch_keys()
        batch = Batch(self._submitted_seq + 1, self._items, self._rows, self.tally)
        future = self._pool.submit(
            lambda: self._deliver(batch),
            may_start=lambda: not self._conflict(keys),
            on_start=lambda started: self._keys_running.__setitem__(started, keys),
            on_end=lambda ended: self._keys_running.pop(ended, None),
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
        """Advance over finished batches in order; raises the first fatal error of any batch
        (unless the sync is already ending on it), and never moves past a failed one."""
        if raise_errors:
            self._pool.raise_fatal_error()
        self._advance()
        return self._acknowledged_seq

    def settle_all(self) -> None:
        """End of input with no fatal error: every finished batch is settled."""
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

    def _batch_keys(self) -> frozenset[str]:
        key = self._ordering_key
        return frozenset(key(item) for item in self._items) if key is not None else frozenset()

    def _conflict(self, keys: frozenset[str]) -> bool:
        """Does a running batch share a key with this one? (At most max_concurrent to check.)"""
        return bool(keys) and any(not keys.isdisjoint(k) for k in self._keys_running.values())
