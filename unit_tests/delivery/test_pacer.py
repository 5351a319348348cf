"""Pacer and RollingWindow: Heap's rate limits kept on a fake clock, never really sleeping."""

from __future__ import annotations

import tracemalloc
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_heap_analytics.config.settings import Pacing, RateLimit
from destination_heap_analytics.delivery.pacer import (
    SAFETY_MARGIN_FRACTION,
    SKETCH_BUCKETS,
    SKETCH_WIDTH,
    IdentityWindows,
    Pacer,
    RollingWindow,
)
from unit_tests.fakes import FakeClock

APP_LIMIT = RateLimit(items=100, window_seconds=60)
PACED_SPAN = 60 * (1 + SAFETY_MARGIN_FRACTION) - 1e-6
"""A rolling window of the length the pacer keeps, a hair short so float rounding of times
exactly one window apart cannot decide a test."""


def make_pacer(pacing: Pacing, fake: FakeClock) -> Pacer:
    return Pacer(pacing, fake)


def send_batches(pacer: Pacer, fake: FakeClock, batches: int, size: int) -> list[tuple[float, int]]:
    """Acquire `batches` batches back to back; the (time, count) of each granted send."""
    sends = []
    for _ in range(batches):
        assert pacer.acquire([{"event": "e"}] * size)
        sends.append((fake.time, size))
    return sends


def max_items_in_any_window(sends: list[tuple[float, int]], window: float) -> int:
    """The most items sent within any closed interval [t, t + window] (t at a send: worst case)."""
    return max(sum(n for at, n in sends if start <= at <= start + window) for start, _ in sends)


# --- per-app limit ----------------------------------------------------------------------------


def test_per_app_limit_holds_in_every_rolling_window():
    fake = FakeClock(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=APP_LIMIT, per_identity=None), fake)

    sends = send_batches(pacer, fake, batches=100, size=10)

    assert max_items_in_any_window(sends, 60.0) <= 100


def test_per_app_long_run_rate_is_near_the_limit():
    fake = FakeClock(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=APP_LIMIT, per_identity=None), fake)
    started = fake.time

    sends = send_batches(pacer, fake, batches=100, size=10)

    elapsed = sends[-1][0] - started
    # 1000 items; the first 10 need no wait, so 990 items took `elapsed` seconds.
    rate_per_minute = 990 / elapsed * 60
    assert rate_per_minute >= 0.95 * 100


def test_burst_is_spread_evenly():
    fake = FakeClock(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=APP_LIMIT, per_identity=None), fake)
    spacing = 10 * 60 * (1 + SAFETY_MARGIN_FRACTION) / 100

    sends = send_batches(pacer, fake, batches=30, size=10)

    gaps = [later[0] - earlier[0] for earlier, later in zip(sends, sends[1:], strict=False)]
    assert min(gaps) >= spacing - 1e-9


def test_first_send_does_not_wait():
    fake = FakeClock(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=APP_LIMIT, per_identity=None), fake)

    assert pacer.acquire([{"event": "e"}] * 10)

    assert fake.sleeps == []
    assert pacer.waited_seconds == 0.0


def test_waited_seconds_counts_only_the_time_a_cancelled_wait_lasted():
    fake = FakeClock(start=5000.0, cancel_after=2.0)
    pacer = Pacer(Pacing(per_app=RateLimit(10, 60), per_identity=None), fake)
    assert pacer.acquire([{"event": "e"}] * 10)

    assert pacer.acquire([{"event": "e"}]) is False

    assert fake.sleeps[0] > 2.0  # the pacer planned a longer wait than the one that happened
    assert pacer.waited_seconds == pytest.approx(2.0)


def test_waited_seconds_accumulates_sleeps():
    fake = FakeClock(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=APP_LIMIT, per_identity=None), fake)

    send_batches(pacer, fake, batches=5, size=10)

    assert fake.sleeps
    assert pacer.waited_seconds == pytest.approx(sum(fake.sleeps))


# --- per-identity limit -----------------------------------------------------------------------


def test_per_identity_limit_blocks_sixth_event_of_same_identity():
    fake = FakeClock(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=None, per_identity=RateLimit(5, 60)), fake)

    for _ in range(5):
        assert pacer.acquire([{"identity": "a"}])
    assert fake.sleeps == []

    assert pacer.acquire([{"identity": "a"}])

    assert fake.sleeps
    assert sum(fake.sleeps) >= 60


def test_per_identity_limit_does_not_block_other_identities():
    fake = FakeClock(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=None, per_identity=RateLimit(5, 60)), fake)

    for _ in range(5):
        assert pacer.acquire([{"identity": "a"}])
    for _ in range(5):
        assert pacer.acquire([{"identity": "b"}])

    assert fake.sleeps == []


def test_per_identity_limit_counts_items_within_one_batch():
    fake = FakeClock(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=None, per_identity=RateLimit(5, 60)), fake)

    assert pacer.acquire([{"identity": "a"}] * 3 + [{"identity": "b"}] * 5)
    assert fake.sleeps == []

    assert pacer.acquire([{"identity": "a"}] * 3)

    assert sum(fake.sleeps) >= 60


def test_per_identity_limit_applies_per_user_id_too():
    fake = FakeClock(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=None, per_identity=RateLimit(5, 60)), fake)

    assert pacer.acquire([{"user_id": "7"}] * 5 + [{"user_id": "8"}] * 5)
    assert pacer.acquire([{"identity": "7"}] * 5)  # an identity of the same text is another user
    assert fake.sleeps == []

    assert pacer.acquire([{"user_id": "7"}])

    assert sum(fake.sleeps) >= 60


def test_an_identify_pair_is_paced_by_its_identity():
    fake = FakeClock(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=None, per_identity=RateLimit(2, 60)), fake)

    assert pacer.acquire([{"identity": "a", "user_id": "1"}])
    assert pacer.acquire([{"identity": "a", "user_id": "2"}])
    assert pacer.acquire([{"identity": "b", "user_id": "1"}])
    assert fake.sleeps == []
    assert pacer.acquire([{"identity": "a", "user_id": "3"}])
    assert sum(fake.sleeps) >= 60


def test_identity_can_send_a_full_window_again_once_its_items_left():
    fake = FakeClock(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=None, per_identity=RateLimit(5, 60)), fake)
    for _ in range(5):
        assert pacer.acquire([{"identity": "a"}])

    fake.time += 200  # well past a window, its margin and the last, partly covered bucket
    for _ in range(5):
        assert pacer.acquire([{"identity": "a"}])

    assert fake.sleeps == []


def test_identity_items_still_in_the_window_keep_counting():
    fake = FakeClock(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=None, per_identity=RateLimit(5, 60)), fake)
    pacer.acquire([{"identity": "a"}] * 5)
    fake.time += 59
    pacer.acquire([{"identity": "b"}] * 5)

    fake.time += 30  # "a" is 89 s old (gone), "b" only 30 s (kept)
    assert pacer.acquire([{"identity": "a"}] * 5)
    assert fake.sleeps == []

    assert pacer.acquire([{"identity": "b"}])
    assert fake.sleeps


def test_identity_wait_ends_within_one_bucket_of_the_window():
    """Bucketed counting may hold an identity back for up to one bucket past the window, no
    more: the wait is bounded, and at least Heap's window."""
    fake = FakeClock(start=5000.0, positive_sleeps=True)
    limit = RateLimit(5, 60)
    pacer = make_pacer(Pacing(per_app=None, per_identity=limit), fake)
    assert pacer.acquire([{"identity": "a"}] * 5)
    fake.time += 1.0

    assert pacer.acquire([{"identity": "a"}])

    window = IdentityWindows(limit).window
    assert 60 - 1.0 <= sum(fake.sleeps) <= window + window / SKETCH_BUCKETS - 1.0


def test_identities_sharing_every_counter_are_paced_together_never_late():
    """A one-counter sketch makes every identity collide: counts only ever err upwards."""
    fake = FakeClock(start=5000.0, positive_sleeps=True)
    pacing = Pacing(per_app=None, per_identity=RateLimit(5, 60))
    pacer = Pacer(pacing, fake, sketch_width=1)
    for _ in range(5):
        assert pacer.acquire([{"identity": "a"}])

    assert pacer.acquire([{"identity": "b"}])

    assert sum(fake.sleeps) >= 60


def test_identity_oversized_request_goes_into_an_empty_window():
    fake = FakeClock(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=None, per_identity=RateLimit(5, 60)), fake)

    assert pacer.acquire([{"identity": "a"}] * 12)

    assert fake.sleeps == []


def test_identity_oversized_request_waits_until_its_window_is_empty():
    fake = FakeClock(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=None, per_identity=RateLimit(5, 60)), fake)
    assert pacer.acquire([{"identity": "a"}])
    fake.time += 10.0
    assert pacer.acquire([{"identity": "a"}])

    assert pacer.acquire([{"identity": "a"}] * 12)

    assert sum(fake.sleeps) >= 60  # until the later item too has left, not just the first


@settings(max_examples=60, deadline=None)
@given(
    identity_limit=st.integers(1, 12),
    app_limit=st.none() | st.integers(20, 120),
    sketch_width=st.sampled_from([1, 4, SKETCH_WIDTH]),
    identities=st.sampled_from([1, 3, 1_000]),
    steps=st.lists(
        st.tuples(
            st.lists(st.integers(0, 10_000), min_size=1, max_size=20),
            st.floats(0, 90, allow_nan=False),
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_generated_traffic_keeps_every_limit_in_every_rolling_window(
    identity_limit: int,
    app_limit: int | None,
    sketch_width: int,
    identities: int,
    steps: list[tuple[list[int], float]],
):
    """Batches of up to 20 items over few or many identities, random pauses between them, and
    sketches from one shared counter (all identities collide) to the real size."""
    fake = FakeClock(start=5000.0, positive_sleeps=True)
    pacing = Pacing(
        per_app=RateLimit(app_limit, 60) if app_limit else None,
        per_identity=RateLimit(identity_limit, 60),
    )
    pacer = Pacer(pacing, fake, sketch_width=sketch_width)
    sends: list[tuple[float, Counter]] = []

    for picks, pause in steps:
        fake.time += pause
        batch = [{"identity": f"user{pick % identities}"} for pick in picks]
        assert pacer.acquire(batch)
        sends.append((fake.time, Counter(item["identity"] for item in batch)))

    for identity in {identity for _, counts in sends for identity in counts}:
        mine = [(at, counts[identity]) for at, counts in sends if identity in counts]
        for start, _ in mine:
            inside = [n for at, n in mine if start <= at <= start + PACED_SPAN]
            # One oversized request may go alone into an empty window (it could never fit).
            assert sum(inside) <= identity_limit or len(inside) == 1
    if app_limit:
        totals = [(at, counts.total()) for at, counts in sends]
        assert max_items_in_any_window(totals, PACED_SPAN) <= app_limit


def test_per_identity_memory_stays_fixed_with_many_distinct_identities():
    """100,000 identities inside one window: the per-identity counts keep their fixed size (one
    log per identity took about 1 KB each, 100 MB here)."""
    fake = FakeClock(start=5000.0)
    pacing = Pacing(per_app=RateLimit(10_000_000, 60), per_identity=RateLimit(1_000, 60))
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        pacer = make_pacer(pacing, fake)
        for start in range(0, 100_000, 1_000):
            assert pacer.acquire([{"identity": f"user{n}"} for n in range(start, start + 1_000)])
            fake.time += 0.6  # 60 s in all: one window, and the time buckets turn over
        held = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()

    # The counters take 2.6 MB, the lists of touched counters at most 2.4 MB more.
    assert held < 6 * 2**20


# --- disabled pacing and cancellation ---------------------------------------------------------


def test_disabled_pacing_never_sleeps():
    fake = FakeClock(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=None, per_identity=None), fake)

    assert not pacer.enabled
    for _ in range(1000):
        assert pacer.acquire([{"identity": "a", "event": "e"}] * 50)

    assert fake.sleeps == []
    assert pacer.waited_seconds == 0.0


def test_cancelled_sleep_makes_acquire_return_false():
    fake = FakeClock(start=5000.0, keep_going=False, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=RateLimit(10, 60), per_identity=None), fake)
    assert pacer.acquire([{"event": "e"}] * 10)

    assert pacer.acquire([{"event": "e"}]) is False
    assert len(fake.sleeps) == 1


# --- RollingWindow ----------------------------------------------------------------------------


def test_window_is_lengthened_by_the_safety_margin():
    window = RollingWindow(RateLimit(100, 60))

    assert window.window == pytest.approx(60 * (1 + SAFETY_MARGIN_FRACTION))


def test_wait_needed_is_zero_when_items_fit():
    window = RollingWindow(RateLimit(100, 60))
    window.record(0.0, 60)

    assert window.wait_needed(1.0, 40) == 0.0


def test_wait_needed_waits_for_enough_old_entries_to_expire():
    window = RollingWindow(RateLimit(100, 60))
    span = window.window
    window.record(0.0, 30)
    window.record(10.0, 30)
    window.record(20.0, 40)

    # 50 more need 50 to leave: the first entry (30) is not enough, the second (60) is.
    assert window.wait_needed(25.0, 50) == pytest.approx(10.0 + span - 25.0)
    # 20 more need only the first entry to leave.
    assert window.wait_needed(25.0, 20) == pytest.approx(0.0 + span - 25.0)


def test_wait_needed_forgets_expired_entries():
    window = RollingWindow(RateLimit(100, 60))
    window.record(0.0, 100)

    assert window.wait_needed(window.window, 100) == 0.0
    assert window.empty


def test_oversized_request_fits_an_empty_window():
    window = RollingWindow(RateLimit(100, 60))

    assert window.wait_needed(0.0, 250) == 0.0


def test_oversized_request_waits_until_window_is_empty():
    window = RollingWindow(RateLimit(100, 60))
    window.record(0.0, 10)
    window.record(5.0, 10)

    assert window.wait_needed(6.0, 250) == pytest.approx(5.0 + window.window - 6.0)
