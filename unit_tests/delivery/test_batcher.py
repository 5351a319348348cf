"""Batcher: batching, the pool of senders, the in-order watermark, ordering keys (shared by
the batchers of one API type), fatal errors.

`deliver` is a fake whose batches can be held until the test releases them, so every interleaving
is set up with events rather than timing. "Not yet" is proven by an event too: the pool reports
when a caller is blocked in it (`SenderPool.wait_for_blocked_callers`), and only then does a
test assert that a batch has not started, or that a call has not returned.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_heap_analytics.delivery.batch_delivery import Batch
from destination_heap_analytics.delivery.batcher import Batcher, OrderingKeys
from destination_heap_analytics.delivery.senders import SenderPool
from destination_heap_analytics.sync_clock import SyncClock

WAIT = 2.0
"""Upper bound for an event the test expects to happen (it normally happens at once)."""


class Fatal(Exception):
    pass


class FakeDeliver:
    """Records each batch; holds the batches in `hold` until released; raises from `fail`."""

    def __init__(self, hold: set[int] = frozenset(), fail: dict[int, Exception] | None = None):
        self.hold = set(hold)
        self.fail = dict(fail or {})
        self.batches: dict[int, Batch] = {}
        self.events: list[tuple[str, int]] = []
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()
        self._started: defaultdict[int, threading.Event] = defaultdict(threading.Event)
        self._gates: defaultdict[int, threading.Event] = defaultdict(threading.Event)
        self._finished: defaultdict[int, threading.Event] = defaultdict(threading.Event)

    def __call__(self, batch: Batch) -> None:
        seq = batch.seq
        with self._lock:
            self.batches[seq] = Batch(seq, list(batch.items), list(batch.rows))
            self.events.append(("start", seq))
            self.running += 1
            self.peak = max(self.peak, self.running)
            started, gate = self._started[seq], self._gates[seq]
        started.set()
        if seq in self.hold:
            gate.wait(WAIT)
        with self._lock:
            self.running -= 1
            self.events.append(("end", seq))
            finished = self._finished[seq]
        finished.set()
        if seq in self.fail:
            raise self.fail[seq]

    def _event(self, events: defaultdict[int, threading.Event], seq: int) -> threading.Event:
        with self._lock:
            return events[seq]

    def started(self, seq: int, timeout: float = WAIT) -> bool:
        return self._event(self._started, seq).wait(timeout)

    def finished(self, seq: int, timeout: float = WAIT) -> bool:
        return self._event(self._finished, seq).wait(timeout)

    def release(self, seq: int) -> None:
        self._event(self._gates, seq).set()

    def release_all(self) -> None:
        with self._lock:
            self.hold.clear()
            gates = list(self._gates.values())
        for gate in gates:
            gate.set()


class Batching:
    """One route's batcher on its own pool, driven the way the writer drives them."""

    def __init__(self, batcher: Batcher, pool: SenderPool, clock: SyncClock) -> None:
        self.batcher, self.pool, self.clock = batcher, pool, clock

    def process_item(self, item: dict, row: int) -> None:
        self.batcher.process_item(item, row)

    def drain(self) -> int:
        return self.batcher.drain()

    def acknowledged(self) -> int:
        return self.batcher.acknowledged()

    def finish(self) -> None:
        self.batcher.drain()
        self.pool.finish()
        self.batcher.settle_all()

    def abort(self) -> None:
        self.pool.abort()

    def blocked(self) -> bool:
        """Wait until the caller driving the batcher (feeding or finishing) is blocked in the
        pool on what it last saw."""
        return self.pool.wait_for_blocked_callers(1, WAIT)

    @property
    def in_flight(self) -> int:
        return self.pool.in_flight


@pytest.fixture
def make_batcher() -> Iterator[Callable[..., tuple[Batching, FakeDeliver]]]:
    made: list[tuple[Batching, FakeDeliver]] = []

    def make(
        batch_size: int = 1,
        max_concurrent: int = 4,
        hold: set[int] = frozenset(),
        fail: dict[int, Exception] | None = None,
        ordering: OrderingKeys | None = None,
        clock: SyncClock | None = None,
        settled: Callable[[Batch], bool] = lambda batch: True,
    ) -> tuple[Batching, FakeDeliver]:
        fake = FakeDeliver(hold, fail)
        clock = clock or SyncClock()
        pool = SenderPool(max_concurrent, clock)
        batcher = Batcher(fake, batch_size, pool, ordering=ordering, settled=settled)
        made.append((Batching(batcher, pool, clock), fake))
        return made[-1]

    yield make
    for loading, fake in made:
        fake.release_all()
        loading.abort()


class Background:
    """Runs a call in a thread, so the test can see whether it blocks."""

    def __init__(self, target: Callable[[], object]) -> None:
        self.error: BaseException | None = None
        self._target = target
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._target()
        except BaseException as error:  # reported to the test through `error`
            self.error = error

    def done(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


def feed(batcher: Batching, count: int, first_row: int = 1) -> None:
    for row in range(first_row, first_row + count):
        batcher.process_item({"n": row}, row)


def eventually(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    """True once `condition()` holds within `timeout` (polling, for a thread to get there)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)
    return True


def eventually_raises(call: Callable[[], object], error: type[Exception], timeout: float) -> bool:
    """True once `call` raises `error` within `timeout` (polling, for a thread to finish)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            call()
        except error:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


# --- batching ---------------------------------------------------------------------------------


def test_full_batches_are_sent_at_batch_size_and_the_rest_waits(make_batcher):
    batcher, fake = make_batcher(batch_size=3)

    feed(batcher, 7)
    batcher.pool.finish()  # every batch submitted has run

    assert fake.started(1, timeout=0) and fake.started(2, timeout=0)
    assert not fake.started(3, timeout=0)
    assert fake.batches[1].items == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert fake.batches[1].rows == [1, 2, 3]
    assert fake.batches[2].rows == [4, 5, 6]


def test_drain_sends_the_partial_batch_and_returns_its_sequence(make_batcher):
    batcher, fake = make_batcher(batch_size=10)
    feed(batcher, 3)

    assert batcher.drain() == 1

    assert fake.started(1)
    assert fake.batches[1].rows == [1, 2, 3]


def test_drain_with_nothing_pending_sends_nothing_and_keeps_the_sequence(make_batcher):
    batcher, fake = make_batcher(batch_size=2)
    assert batcher.drain() == 0
    feed(batcher, 4)

    assert batcher.drain() == 2
    assert batcher.drain() == 2

    batcher.finish()
    assert sorted(fake.batches) == [1, 2]


def test_finish_sends_the_partial_batch(make_batcher):
    batcher, fake = make_batcher(batch_size=3)
    feed(batcher, 4)

    batcher.finish()

    assert fake.batches[2].rows == [4]
    assert batcher.acknowledged() == 2


# --- the watermark ----------------------------------------------------------------------------


def test_acknowledged_advances_over_finished_batches(make_batcher):
    batcher, fake = make_batcher(hold={1, 2})
    feed(batcher, 2)
    assert batcher.acknowledged() == 0

    fake.release(1)
    assert eventually_acknowledged(batcher, 1)
    assert batcher.acknowledged() == 1
    fake.release(2)
    assert eventually_acknowledged(batcher, 2)


def test_acknowledged_does_not_pass_an_unfinished_older_batch(make_batcher):
    batcher, fake = make_batcher(max_concurrent=2, hold={1})
    feed(batcher, 2)
    assert fake.finished(2)
    # A third batch needs a free sender; only batch 2 can free one, so once it is
    # submitted batch 2 is certainly done while batch 1 is still held.
    feed(batcher, 1, first_row=3)
    assert fake.started(3)

    assert batcher.acknowledged() == 0

    fake.release(1)
    assert eventually_acknowledged(batcher, 3)


def test_a_finished_batch_is_not_acknowledged_until_settled_or_the_end(make_batcher):
    unsettled = {2}
    batcher, fake = make_batcher(settled=lambda batch: batch.seq not in unsettled)
    feed(batcher, 3)
    assert all(fake.finished(seq) for seq in (1, 2, 3))
    assert eventually_acknowledged(batcher, 1)
    assert batcher.acknowledged() == 1  # batch 2 holds the watermark, and batch 3 behind it

    unsettled.clear()
    assert batcher.acknowledged() == 3


def test_finish_settles_every_batch(make_batcher):
    batcher, fake = make_batcher(settled=lambda batch: False)
    feed(batcher, 2)
    batcher.finish()
    assert batcher.acknowledged() == 2


def eventually_acknowledged(batcher: Batching, seq: int, timeout: float = WAIT) -> bool:
    return eventually(lambda: batcher.acknowledged() >= seq, timeout)


# --- concurrency ------------------------------------------------------------------------------


def test_never_more_than_max_concurrent_deliveries_at_once(make_batcher):
    batcher, fake = make_batcher(max_concurrent=3, hold=set(range(1, 11)))
    feeder = Background(lambda: feed(batcher, 10))

    assert all(fake.started(seq) for seq in (1, 2, 3))
    assert batcher.blocked()
    assert not fake.started(4, timeout=0)
    assert not feeder.done(timeout=0)
    assert batcher.in_flight == 3
    fake.release_all()
    assert feeder.done(timeout=WAIT) and feeder.error is None
    batcher.finish()

    assert fake.peak == 3
    assert sorted(fake.batches) == list(range(1, 11))


def test_a_free_sender_is_used_at_once(make_batcher):
    batcher, fake = make_batcher(max_concurrent=2, hold={1, 2})
    feeder = Background(lambda: feed(batcher, 3))
    assert fake.started(1) and fake.started(2)
    assert batcher.blocked()
    assert not fake.started(3, timeout=0)

    fake.release(2)

    assert fake.started(3)
    assert feeder.done(WAIT)


# --- ordering keys ----------------------------------------------------------------------------


def by_user(item: dict) -> str:
    return item["identity"]


def test_batch_sharing_a_key_with_one_in_flight_waits_for_it(make_batcher):
    batcher, fake = make_batcher(batch_size=2, ordering=OrderingKeys(by_user), hold={1})
    batcher.process_item({"identity": "a"}, 1)
    batcher.process_item({"identity": "b"}, 2)
    assert fake.started(1)

    feeder = Background(
        lambda: [batcher.process_item({"identity": u}, r) for r, u in ((3, "b"), (4, "c"))]
    )

    assert batcher.blocked()
    assert not fake.started(2, timeout=0)
    assert not feeder.done(timeout=0)
    fake.release(1)
    assert fake.started(2)
    assert feeder.done(WAIT) and feeder.error is None
    assert fake.events.index(("end", 1)) < fake.events.index(("start", 2))


def test_batch_with_disjoint_keys_does_not_wait(make_batcher):
    batcher, fake = make_batcher(batch_size=2, ordering=OrderingKeys(by_user), hold={1, 2})
    batcher.process_item({"identity": "a"}, 1)
    batcher.process_item({"identity": "b"}, 2)
    assert fake.started(1)

    batcher.process_item({"identity": "c"}, 3)
    batcher.process_item({"identity": "d"}, 4)

    assert fake.started(2)
    assert ("end", 1) not in fake.events


def test_without_ordering_key_equal_items_are_sent_concurrently(make_batcher):
    batcher, fake = make_batcher(hold={1, 2})

    batcher.process_item({"identity": "a"}, 1)
    batcher.process_item({"identity": "a"}, 2)

    assert fake.started(1) and fake.started(2)
    assert fake.running == 2


def test_a_batch_of_another_batcher_sharing_a_key_with_one_in_flight_waits_for_it():
    """Two streams sending to one API: last write wins across them too, retries included."""
    ordering = OrderingKeys(by_user)
    first, second = FakeDeliver(hold={1}), FakeDeliver()
    pool = SenderPool(4, SyncClock())
    batchers = [Batcher(d, 1, pool, ordering=ordering) for d in (first, second)]
    batchers[0].process_item({"identity": "u", "plan": "old"}, 1)
    assert first.started(1)

    feeder = Background(lambda: batchers[1].process_item({"identity": "u", "plan": "new"}, 2))

    assert pool.wait_for_blocked_callers(1, WAIT)
    assert not second.started(1, timeout=0)
    first.release(1)
    assert second.started(1) and feeder.done(WAIT)
    pool.finish()


def test_a_record_whose_key_is_in_another_batchers_filling_batch_sends_that_batch_first():
    ordering = OrderingKeys(by_user)
    first, second = FakeDeliver(hold={1}), FakeDeliver()
    pool = SenderPool(4, SyncClock())
    batchers = [Batcher(d, 10, pool, ordering=ordering) for d in (first, second)]
    batchers[0].process_item({"identity": "u", "plan": "old"}, 1)
    batchers[0].process_item({"identity": "v"}, 2)
    batchers[1].process_item({"identity": "w"}, 3)
    # A batch submitted would still be in flight (held): none is.
    assert pool.in_flight == 0 and not first.started(1, timeout=0)

    batchers[1].process_item({"identity": "u", "plan": "new"}, 4)

    assert first.started(1)
    assert first.batches[1].rows == [1, 2]
    first.release(1)
    assert batchers[1].drain() == 1
    pool.finish()
    assert second.batches[1].rows == [3, 4]


@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 5)), min_size=1, max_size=60),
    batch_size=st.integers(1, 7),
    concurrency=st.integers(1, 4),
)
def test_records_of_one_key_reach_delivery_in_input_order_across_batchers(
    records, batch_size, concurrency
):
    """Whichever batcher a record of a key comes through: its batches never overlap, and they
    start in input order."""
    log: list[tuple[str, list[dict]]] = []
    lock = threading.Lock()

    def deliver(batch: Batch) -> None:
        with lock:
            log.append(("start", batch.items))
        with lock:
            log.append(("end", batch.items))

    ordering = OrderingKeys(by_user)
    pool = SenderPool(concurrency, SyncClock())
    batchers = [Batcher(deliver, batch_size, pool, ordering=ordering) for _ in range(3)]
    for row, (stream, user) in enumerate(records):
        batchers[stream].process_item({"identity": str(user), "row": row}, row)
    for batcher in batchers:
        batcher.drain()
    pool.finish()

    for user in {str(user) for _, user in records}:
        rows, running = [], 0
        for kind, items in log:
            mine = [item["row"] for item in items if item["identity"] == user]
            if mine and kind == "start":
                assert running == 0, "two batches of one key in flight together"
                rows += mine
            running += bool(mine) * (1 if kind == "start" else -1)
        assert rows == sorted(rows) == [r for r, (_, u) in enumerate(records) if str(u) == user]


# --- fatal errors -----------------------------------------------------------------------------


def test_process_batch_reraises_a_fatal_error(make_batcher):
    batcher, _ = make_batcher(max_concurrent=1, fail={1: Fatal("boom")})
    feed(batcher, 1)

    with pytest.raises(Fatal, match="boom"):
        feed(batcher, 1, first_row=2)


def test_process_batch_reraises_a_fatal_error_of_a_batch_that_is_not_the_oldest(make_batcher):
    batcher, fake = make_batcher(max_concurrent=2, hold={1}, fail={2: Fatal("second")})
    feed(batcher, 2)
    assert fake.finished(2)

    with pytest.raises(Fatal, match="second"):
        feed(batcher, 1, first_row=3)
    assert 3 not in fake.batches


def test_acknowledged_reraises_a_fatal_error_of_the_oldest_batch(make_batcher):
    batcher, fake = make_batcher(fail={1: Fatal("first")})
    feed(batcher, 1)
    assert fake.finished(1)

    assert eventually_raises(batcher.acknowledged, Fatal, timeout=WAIT)


def test_acknowledged_reraises_a_fatal_error_of_a_batch_that_is_not_the_oldest(make_batcher):
    batcher, fake = make_batcher(hold={1}, fail={2: Fatal("second")})
    feed(batcher, 2)
    assert fake.finished(2)

    assert eventually_raises(batcher.acknowledged, Fatal, timeout=WAIT)


def test_acknowledged_never_passes_a_failed_batch(make_batcher):
    batcher, fake = make_batcher(hold={1}, fail={1: Fatal("first")})
    feed(batcher, 2)
    assert fake.finished(2)
    fake.release(1)
    assert eventually_raises(batcher.acknowledged, Fatal, timeout=WAIT)

    try:
        acknowledged = batcher.acknowledged()
    except Fatal:
        acknowledged = 0
    assert acknowledged == 0


def test_finish_reraises_a_fatal_error(make_batcher):
    batcher, _ = make_batcher(fail={1: Fatal("first")})
    feed(batcher, 1)

    with pytest.raises(Fatal, match="first"):
        batcher.finish()


def test_finish_reraises_a_fatal_error_while_an_older_batch_is_still_in_flight(make_batcher):
    batcher, fake = make_batcher(hold={1}, fail={2: Fatal("second")})
    feed(batcher, 2)

    with pytest.raises(Fatal, match="second"):
        batcher.finish()
    assert ("end", 1) not in fake.events


def test_finish_raises_as_soon_as_a_later_batch_fails(make_batcher):
    batcher, fake = make_batcher(hold={1, 2}, fail={2: Fatal("second")})
    feed(batcher, 2)
    finisher = Background(batcher.finish)
    assert batcher.blocked()
    assert not finisher.done(timeout=0)

    fake.release(2)

    assert finisher.done(timeout=1.0)
    assert isinstance(finisher.error, Fatal)
    assert ("end", 1) not in fake.events


# --- finish and abort -------------------------------------------------------------------------


def test_finish_waits_for_every_batch(make_batcher):
    batcher, fake = make_batcher(batch_size=2, hold={1, 3})
    feed(batcher, 5)
    finisher = Background(batcher.finish)

    assert batcher.blocked()
    assert not finisher.done(timeout=0)
    fake.release(1)
    assert eventually(lambda: batcher.in_flight == 1)  # batches 1 and 2 have ended
    assert batcher.blocked()  # blocked again since
    assert not finisher.done(timeout=0)
    fake.release(3)

    assert finisher.done(WAIT) and finisher.error is None
    assert all(("end", seq) in fake.events for seq in (1, 2, 3))
    assert batcher.acknowledged() == 3
    assert batcher.in_flight == 0


def test_abort_cancels_the_clock(make_batcher):
    clock = SyncClock()
    batcher, _ = make_batcher(clock=clock)

    batcher.abort()

    assert clock.cancelled


def test_abort_wakes_a_delivery_sleeping_on_the_clock(make_batcher):
    clock = SyncClock()
    sleeping, woke = threading.Event(), threading.Event()
    pool = SenderPool(1, clock)

    def deliver(batch: Batch) -> None:
        sleeping.set()
        if not clock.sleep(WAIT):
            woke.set()

    Batcher(deliver, 1, pool).process_item({"n": 1}, 1)
    assert sleeping.wait(WAIT)

    pool.abort()

    assert woke.wait(WAIT)


def test_a_caller_blocked_on_busy_senders_gets_periodic_callbacks(monkeypatch):
    monkeypatch.setattr("destination_heap_analytics.delivery.senders.WAIT_REPORT_SECONDS", 0.01)
    fake = FakeDeliver(hold={1})
    calls: list[float] = []
    pool = SenderPool(1, SyncClock(), while_waiting=lambda: calls.append(time.monotonic()))
    batcher = Batcher(fake, 1, pool)
    batcher.process_item({"n": 1}, 1)
    assert fake.started(1)
    feeder = Background(lambda: batcher.process_item({"n": 2}, 2))  # blocks on batch 1
    deadline = time.monotonic() + WAIT
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(calls) >= 3 and not feeder.done(timeout=0)
    fake.release(1)
    assert feeder.done(WAIT) and feeder.error is None
    pool.finish()
    assert sorted(i["n"] for batch in fake.batches.values() for i in batch.items) == [1, 2]


def test_batchers_of_several_routes_share_the_pools_concurrency_cap():
    first, second = FakeDeliver(hold={1, 2}), FakeDeliver(hold={1, 2})
    pool = SenderPool(3, SyncClock())
    batchers = [Batcher(first, 1, pool), Batcher(second, 1, pool)]
    batchers[0].process_item({"n": 1}, 1)
    batchers[0].process_item({"n": 2}, 2)
    batchers[1].process_item({"n": 3}, 3)
    assert first.started(1) and first.started(2) and second.started(1)

    feeder = Background(lambda: batchers[1].process_item({"n": 4}, 4))

    assert pool.wait_for_blocked_callers(1, WAIT)
    assert not feeder.done(timeout=0)
    assert pool.in_flight == 3
    first.release(1)
    assert feeder.done(WAIT) and second.started(2)
    first.release_all(), second.release_all()
    pool.finish()
