"""Batching between the transformer and Heap: process a record, process a batch, drain on state.

Full batches go to a bounded pool of sending threads; at most `max_concurrent` batches are in
flight and one is filling, so memory does not grow with the input. Each batch gets a sequence
number; `acknowledged()` is the highest number up to which every batch is fully accounted for
(delivered, or rejected and counted). A state is released once that watermark passes the last
batch submitted before it, which keeps states in input order and never early, without stopping
the flow of records at each state.

User and account properties are last-write-wins in Heap, so two batches that touch the same
identity (or account) are never in flight together: the later one waits for the earlier one,
retries included. Events need no such care; each carries its own timestamp.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from destination_heap_analytics.delivery import Batch


class BatchLoader:
    def __init__(
        self,
        deliver: Callable[[Batch], None],
        batch_size: int,
        max_concurrent: int,
        cancelled: threading.Event,
        ordering_key: Callable[[dict], str] | None = None,
    ) -> None:
        """`deliver` runs in a sending thread and raises only fatal errors; batches sharing an
        `ordering_key` value are delivered one after the other, in input order."""
        self._deliver = deliver
        self._batch_size = batch_size
        self._max_concurrent = max_concurrent
        self._cancelled = cancelled
        self._executor = ThreadPoolExecutor(max_concurrent, thread_name_prefix="heap-send")
        self._items: list[dict] = []
        self._rows: list[int] = []
        self._ordering_key = ordering_key
        self._in_flight: deque[tuple[int, Future]] = deque()
        self._keys_in_flight: dict[Future, frozenset[str]] = {}
        self._submitted_seq = 0
        self._acknowledged_seq = 0
        self.has_finished_batches = False
        """Set by the sending threads when a batch ends; lets callers skip `acknowledged()`."""

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
        self._wait_for_capacity(keys)
        self._submitted_seq += 1
        batch = Batch(self._submitted_seq, self._items, self._rows)
        self._items, self._rows = [], []
        future = self._executor.submit(self._deliver, batch)
        future.add_done_callback(self._mark_finished)
        self._in_flight.append((batch.seq, future))
        if keys:
            self._keys_in_flight[future] = keys

    def drain(self) -> int:
        """Send what is pending; returns the sequence a state must wait for."""
        self.process_batch()
        return self._submitted_seq

    def _mark_finished(self, _: Future) -> None:
        self.has_finished_batches = True

    def acknowledged(self) -> int:
        """Advance over finished batches in order; raises the first fatal error found, in any
        batch in flight, and keeps a failed batch in place so the watermark never passes it."""
        self.has_finished_batches = False
        self._raise_fatal_errors()
        in_flight = self._in_flight
        while in_flight and in_flight[0][1].done():
            seq, future = in_flight[0]
            future.result()
            in_flight.popleft()
            self._acknowledged_seq = seq
        return self._acknowledged_seq

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def finish(self) -> None:
        """Drain and wait for every batch (end of input)."""
        self.drain()
        while self._in_flight:
            self._raise_fatal_errors()
            wait([f for _, f in self._in_flight], return_when=FIRST_COMPLETED)
            self.acknowledged()
        self._executor.shutdown(wait=True)

    def abort(self) -> None:
        """Stop sending: wake sleeping retries and drop queued batches."""
        self._cancelled.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _batch_keys(self) -> frozenset[str]:
        key = self._ordering_key
        return frozenset(key(item) for item in self._items) if key is not None else frozenset()

    def _wait_for_capacity(self, keys: frozenset[str]) -> None:
        """Wait for a free sender, and for any batch in flight that shares a key with this one."""
        while True:
            self._raise_fatal_errors()
            for future in [f for f in self._keys_in_flight if f.done()]:
                del self._keys_in_flight[future]
            busy = [f for _, f in self._in_flight if not f.done()]
            blocking = [f for f in busy if not keys.isdisjoint(self._keys_in_flight.get(f, ()))]
            if len(busy) < self._max_concurrent and not blocking:
                return
            wait(blocking or busy, return_when=FIRST_COMPLETED)

    def _raise_fatal_errors(self) -> None:
        """A failed batch ends the sync as soon as it is seen, not when its turn comes."""
        for _, future in self._in_flight:
            if future.done() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
