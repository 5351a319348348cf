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
from concurrent.futures import Future, ThreadPoolExecutor

from destination_heap_analytics.delivery import Batch

WAIT_REPORT_SECONDS = 10.0


class BatchLoader:
    def __init__(
        self,
        deliver: Callable[[Batch], None],
        batch_size: int,
        max_concurrent: int,
        cancelled: threading.Event,
        ordering_key: Callable[[dict], str] | None = None,
        while_waiting: Callable[[], None] = lambda: None,
        settled: Callable[[Batch], bool] = lambda batch: True,
    ) -> None:
        """`deliver` runs in a sending thread and raises only fatal errors; batches sharing an
        `ordering_key` value are delivered one after the other, in input order. `while_waiting`
        is called every WAIT_REPORT_SECONDS while the caller is blocked on busy senders (for
        example through a long retry), so progress can still be reported. A finished batch
        counts as acknowledged only once `settled(batch)`, or at the end of the input."""
        self._deliver = deliver
        self._settled = settled
        self._batch_size = batch_size
        self._max_concurrent = max_concurrent
        self._cancelled = cancelled
        self._executor = ThreadPoolExecutor(max_concurrent, thread_name_prefix="heap-send")
        self._items: list[dict] = []
        self._rows: list[int] = []
        self._ordering_key = ordering_key
        self._while_waiting = while_waiting
        # Batches not yet acknowledged, oldest first (finished ones wait here for older ones).
        self._unacknowledged: deque[tuple[Batch, Future]] = deque()
        self._submitted_seq = 0
        self._acknowledged_seq = 0
        # Shared with the sending threads' completion callbacks, under `_changed`:
        self._changed = threading.Condition()
        self._running = 0
        self._keys_running: dict[Future, frozenset[str]] = {}
        self._fatal: BaseException | None = None
        self.has_finished_batches = False
        """Set when a batch ends; lets callers skip `acknowledged()` when nothing changed."""

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
        self._wait_until(lambda: self._running < self._max_concurrent and not self._conflict(keys))
        self._submitted_seq += 1
        batch = Batch(self._submitted_seq, self._items, self._rows)
        self._items, self._rows = [], []
        with self._changed:
            self._running += 1
            future = self._executor.submit(self._deliver, batch)
            if keys:
                self._keys_running[future] = keys
        future.add_done_callback(self._on_finished)
        self._unacknowledged.append((batch, future))
        self._advance()

    def drain(self) -> int:
        """Send what is pending; returns the sequence a state must wait for."""
        self.process_batch()
        return self._submitted_seq

    def acknowledged(self) -> int:
        """Advance over finished batches in order; raises the first fatal error of any batch,
        and never moves past a failed one."""
        self.has_finished_batches = False
        self._raise_fatal_error()
        self._advance()
        return self._acknowledged_seq

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
            self._acknowledged_seq = batch.seq

    @property
    def in_flight(self) -> int:
        return self._running

    def finish(self) -> None:
        """Drain and wait for every batch (end of input): with no fatal error, every batch is
        settled, so every state can go out."""
        self.drain()
        self._wait_until(lambda: self._running == 0)
        self.acknowledged()
        self._advance(settle_all=True)
        self._executor.shutdown(wait=True)

    def abort(self) -> None:
        """Stop sending: wake sleeping retries and drop queued batches."""
        self._cancelled.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _on_finished(self, future: Future) -> None:
        """Runs in the sending thread (or at once, if already done): constant work per batch."""
        with self._changed:
            self._running -= 1
            self._keys_running.pop(future, None)
            if self._fatal is None and not future.cancelled() and future.exception() is not None:
                self._fatal = future.exception()
            self.has_finished_batches = True
            self._changed.notify_all()

    def _batch_keys(self) -> frozenset[str]:
        key = self._ordering_key
        return frozenset(key(item) for item in self._items) if key is not None else frozenset()

    def _conflict(self, keys: frozenset[str]) -> bool:
        """Does a running batch share a key with this one? (At most max_concurrent to check.)"""
        return bool(keys) and any(not keys.isdisjoint(k) for k in self._keys_running.values())

    def _wait_until(self, ready: Callable[[], bool]) -> None:
        """Block until `ready()` (checked under the lock), reporting every WAIT_REPORT_SECONDS;
        a fatal error in any batch ends the wait by being raised."""
        while True:
            with self._changed:
                timed_out = False
                if self._fatal is None and not ready():
                    timed_out = not self._changed.wait(WAIT_REPORT_SECONDS)
                fatal, now_ready = self._fatal, ready()
            if fatal is not None:
                raise fatal
            if now_ready:
                return
            if timed_out:
                self._while_waiting()

    def _raise_fatal_error(self) -> None:
        """A failed batch ends the sync as soon as it is seen, not when its turn comes."""
        if self._fatal is not None:
            raise self._fatal
