"""The fakes the unit tests share: the one fake clock (see `sync_clock.Clock`) and a fake Heap
that refuses chosen identities."""

from __future__ import annotations

import threading

from destination_heap_analytics.heap.client import HeapRejected, HeapTransientError


class FakeClock:
    """The sync's clock on fake time: `time` moves only when a test or a sleep moves it.

    `sleep` records each requested wait and returns `keep_going`. With `cancel_after`, a longer
    wait lasts only that long and reports cancellation (a sync cancelled in the middle of a
    wait). With `positive_sleeps`, a wait of zero or less fails the test (the pacer must never
    ask for one). After `cancel()`, every sleep returns False at once, as a cancelled sync's.
    """

    def __init__(
        self,
        start: float = 5000.0,
        keep_going: bool = True,
        positive_sleeps: bool = False,
        cancel_after: float | None = None,
    ) -> None:
        self.time = start
        self.sleeps: list[float] = []
        self.keep_going = keep_going
        self.positive_sleeps = positive_sleeps
        self.cancel_after = cancel_after
        self.cancelled = False

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> bool:
        assert seconds > 0 or not self.positive_sleeps
        if self.cancelled:
            return False
        self.sleeps.append(seconds)
        if self.cancel_after is not None and seconds > self.cancel_after:
            self.time += self.cancel_after
            return False
        self.time += seconds
        return self.keep_going

    def cancel(self) -> None:
        self.cancelled = True


class RefusingHeap:
    """Heap's ingestion API as a client factory for `HeapWriter.start`: it refuses (HTTP 400,
    as a whole) every request that holds an identity in `refused`, stores what it accepts in
    order, and counts requests. `fail_once` identities get one HTTP 500 each, on their first
    request."""

    def __init__(self, refused: set[str] = frozenset(), fail_once: set[str] = frozenset()):
        self.refused = set(refused)
        self.fail_once = set(fail_once)
        self.requests = 0
        self.accepted: list[dict] = []
        self._lock = threading.Lock()

    def __call__(self, endpoint_url: str, app_id: str, bulk_key: str | None, **_: object):
        return self

    def body(self, items: list[dict]) -> list[dict]:
        return items

    def post(self, items: list[dict]) -> None:
        identities = {item["identity"] for item in items}
        with self._lock:
            self.requests += 1
            failing = identities & self.fail_once
            self.fail_once -= failing
        if failing:
            raise HeapTransientError("HTTP 500 from Heap")
        if identities & self.refused:
            raise HeapRejected(400, "events properties")
        with self._lock:
            self.accepted += items

    def close(self) -> None:
        pass
