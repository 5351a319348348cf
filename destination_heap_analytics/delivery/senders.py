"""The sending threads, shared by every route of a sync.

`max_concurrent_requests` caps the requests in flight for the whole sync, whatever the number of
streams, so the pool is one object that every route's batcher submits to. Everything that the
sending threads and the main thread share (the running count, the first fatal error, and what a
batcher keeps about its own running batches) changes under the pool's one condition.

The pool also knows which callers are blocked in `wait_until` on what they last saw, so a test
can wait until a submitting thread is really held back (by the cap, or by an ordering key in
flight) and only then assert that its batch has not started, rather than watching for a while
(`wait_for_blocked_callers`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

from destination_heap_analytics.sync_clock import Clock

WAIT_REPORT_SECONDS = 10.0
"""How often a caller blocked on busy senders gets the `while_waiting` callback."""


class SenderPool:
    def __init__(
        self, size: int, clock: Clock, while_waiting: Callable[[], None] = lambda: None
    ) -> None:
        """`while_waiting` is called every WAIT_REPORT_SECONDS while the main thread is blocked
        on busy senders (for example through a long retry), so progress can still be reported."""
        self._size = size
        self._clock = clock
        self._executor = DaemonThreads(size, "heap-send")
        lock = threading.RLock()
        self._changed = threading.Condition(lock)
        self._blocked: set[object] = set()
        """Callers of `wait_until` waiting with nothing changed since they found it not ready
        (emptied at each change)."""
        self._blocked_changed = threading.Condition(lock)
        """Only `wait_for_blocked_callers` waits on this one, so counting a blocked caller never
        wakes the callers blocked in `wait_until`."""
        self._running = 0
        self._fatal: BaseException | None = None
        self._while_waiting = while_waiting
        self._batches_ended = False

    def batches_ended(self) -> bool:
        """Has a batch ended since the last call? Lets the writer skip re-checking held states
        when nothing changed."""
        if not self._batches_ended:  # the common case, read without the lock: nothing to reset
            return False
        with self._changed:  # reset under the lock, so a batch ending meanwhile is not lost
            self._batches_ended = False
        return True

    @property
    def in_flight(self) -> int:
        return self._running

    def submit(
        self,
        task: Callable[[], None],
        may_start: Callable[[], bool],
        on_start: Callable[[Future], None],
        on_end: Callable[[Future], None],
    ) -> Future:
        """Run `task` in a sending thread once a sender is free and `may_start()` holds.

        `may_start`, `on_start` and `on_end` run under the pool's lock, so a batcher can keep
        per-batch facts (ordering keys in flight) consistent with what is running. Called by
        the main thread only: the check and the count of a new batch take the lock in turn,
        which is safe while no other thread submits.
        """
        self.wait_until(lambda: self._running < self._size and may_start())
        with self._changed:
            self._running += 1
            future = self._executor.submit(task)
            on_start(future)

        def ended(done: Future) -> None:
            with self._changed:
                self._running -= 1
                on_end(done)
                if self._fatal is None and not done.cancelled() and done.exception() is not None:
                    self._fatal = done.exception()
                self._batches_ended = True
                self._blocked.clear()
                self._changed.notify_all()

        future.add_done_callback(ended)
        return future

    def wait_until(self, ready: Callable[[], bool]) -> None:
        """Block until `ready()` (checked under the lock); a fatal error in any batch ends the
        wait by being raised."""
        while True:
            with self._changed:
                timed_out = False
                if self._fatal is None and not ready():
                    timed_out = not self._wait_blocked()
                fatal, now_ready = self._fatal, ready()
            if fatal is not None:
                raise fatal
            if now_ready:
                return
            if timed_out:
                self._while_waiting()

    def _wait_blocked(self) -> bool:
        """Wait (holding the lock) for a change, as a blocked caller until one comes; False if
        none came within WAIT_REPORT_SECONDS."""
        caller = object()
        self._blocked.add(caller)
        self._blocked_changed.notify_all()
        try:
            return self._changed.wait(WAIT_REPORT_SECONDS)
        finally:
            self._blocked.discard(caller)

    def wait_for_blocked_callers(self, count: int, timeout: float) -> bool:
        """Block until `count` callers of `wait_until` are blocked, each having found its
        condition false since the last batch ended (so a submitting thread's batch has not
        started); False if `timeout` passes first. For tests: "not yet" proven by an event."""
        with self._blocked_changed:
            return self._blocked_changed.wait_for(lambda: len(self._blocked) >= count, timeout)

    @property
    def fatal_error(self) -> BaseException | None:
        """The first fatal error of any batch, if one failed."""
        return self._fatal

    def raise_fatal_error(self) -> None:
        """A failed batch ends the sync as soon as it is seen, not when its turn comes."""
        if self._fatal is not None:
            raise self._fatal

    def finish(self) -> None:
        """Wait for every batch in flight (end of input)."""
        self.wait_until(lambda: self._running == 0)
        self._executor.shutdown(wait=True)

    def abort(self) -> None:
        """Stop sending: wake sleeping retries and pacing, drop queued batches."""
        self._clock.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)


class DaemonThreads:
    """A fixed set of sending threads that never keep the process alive.

    `concurrent.futures.ThreadPoolExecutor` joins its threads when the interpreter exits, so a
    sync stopped by SIGTERM or Ctrl-C while a request hangs in Heap would not exit until the
    read timed out (60 s), long after the platform's grace period. A stopped sync abandons such
    a request instead: its batch was never acknowledged, so no state covers it, and the next
    sync sends it again.
    """

    def __init__(self, size: int, name: str) -> None:
        self._tasks: queue.SimpleQueue[tuple[Future, Callable[[], None]] | None] = (
            queue.SimpleQueue()
        )
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{n}", daemon=True)
            for n in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, task: Callable[[], None]) -> Future:
        future: Future = Future()
        self._tasks.put((future, task))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop the threads once they finish what they run; queued tasks are cancelled first
        with `cancel_futures`, else run."""
        if cancel_futures:
            while True:
                try:
                    queued = self._tasks.get_nowait()
                except queue.Empty:
                    break
                if queued is not None:
                    queued[0].cancel()
        for _ in self._threads:
            self._tasks.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def _work(self) -> None:
        while True:
            queued = self._tasks.get()
            if queued is None:
                return
            future, task = queued
            if not future.set_running_or_notify_cancel():
                continue
            try:
                task()
            except BaseException as error:  # noqa: B036 - the future carries every failure
                future.set_exception(error)
            else:
                future.set_result(None)
