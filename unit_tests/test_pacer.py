"""Pacer and RollingWindow: Heap's rate limits kept on a fake clock, never really sleeping."""

from __future__ import annotations

import pytest

from destination_heap_analytics.config import Pacing, RateLimit
from destination_heap_analytics.pacer import SAFETY_MARGIN_FRACTION, Pacer, RollingWindow
from unit_tests.fakes import FakeTime

APP_LIMIT = RateLimit(items=100, window_seconds=60)


def make_pacer(pacing: Pacing, fake: FakeTime) -> Pacer:
    return Pacer(pacing, sleep=fake.sleep, clock=fake.clock)


def send_batches(pacer: Pacer, fake: FakeTime, batches: int, size: int) -> list[tuple[float, int]]:
    """Acquire `batches` batches back to back; the (time, count) of each granted send."""
    sends = []
    for _ in range(batches):
        assert pacer.acquire([{"event": "e"}] * size)
        sends.append((fake.now, size))
    return sends


def max_items_in_any_window(sends: list[tuple[float, int]], window: float) -> int:
    """The most items sent within any closed interval [t, t + window] (t at a send: worst case)."""
    return max(sum(n for at, n in sends if start <= at <= start + window) for start, _ in sends)


# --- per-app limit ----------------------------------------------------------------------------


def test_per_app_limit_holds_in_every_rolling_window():
    fake = FakeTime(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=APP_LIMIT, per_identity=None), fake)

    sends = send_batches(pacer, fake, batches=100, size=10)

    assert max_items_in_any_window(sends, 60.0) <= 100


def test_per_app_long_run_rate_is_near_the_limit():
    fake = FakeTime(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=APP_LIMIT, per_identity=None), fake)
    started = fake.now

    sends = send_batches(pacer, fake, batches=100, size=10)

    elapsed = sends[-1][0] - started
    # 1000 items; the first 10 need no wait, so 990 items took `elapsed` seconds.
    rate_per_minute = 990 / elapsed * 60
    assert rate_per_minute >= 0.95 * 100


def test_burst_is_spread_evenly():
    fake = FakeTime(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=APP_LIMIT, per_identity=None), fake)
    spacing = 10 * 60 * (1 + SAFETY_MARGIN_FRACTION) / 100

    sends = send_batches(pacer, fake, batches=30, size=10)

    gaps = [later[0] - earlier[0] for earlier, later in zip(sends, sends[1:], strict=False)]
    assert min(gaps) >= spacing - 1e-9


def test_first_send_does_not_wait():
    fake = FakeTime(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=APP_LIMIT, per_identity=None), fake)

    assert pacer.acquire([{"event": "e"}] * 10)

    assert fake.sleeps == []
    assert pacer.waited_seconds == 0.0


def test_waited_seconds_accumulates_sleeps():
    fake = FakeTime(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=APP_LIMIT, per_identity=None), fake)

    send_batches(pacer, fake, batches=5, size=10)

    assert fake.sleeps
    assert pacer.waited_seconds == pytest.approx(sum(fake.sleeps))


# --- per-identity limit -----------------------------------------------------------------------


def test_per_identity_limit_blocks_sixth_event_of_same_identity():
    fake = FakeTime(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=None, per_identity=RateLimit(5, 60)), fake)

    for _ in range(5):
        assert pacer.acquire([{"identity": "a"}])
    assert fake.sleeps == []

    assert pacer.acquire([{"identity": "a"}])

    assert fake.sleeps
    assert sum(fake.sleeps) >= 60


def test_per_identity_limit_does_not_block_other_identities():
    fake = FakeTime(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=None, per_identity=RateLimit(5, 60)), fake)

    for _ in range(5):
        assert pacer.acquire([{"identity": "a"}])
    for _ in range(5):
        assert pacer.acquire([{"identity": "b"}])

    assert fake.sleeps == []


def test_per_identity_limit_counts_items_within_one_batch():
    fake = FakeTime(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=None, per_identity=RateLimit(5, 60)), fake)

    assert pacer.acquire([{"identity": "a"}] * 3 + [{"identity": "b"}] * 5)
    assert fake.sleeps == []

    assert pacer.acquire([{"identity": "a"}] * 3)

    assert sum(fake.sleeps) >= 60


def test_identities_with_empty_windows_are_forgotten():
    fake = FakeTime(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=None, per_identity=RateLimit(5, 60)), fake)
    pacer.acquire([{"identity": "a"}, {"identity": "b"}])
    assert len(pacer._identities) == 2

    fake.now += 200  # well past a window (plus margin) and the sweep interval
    pacer.acquire([{"identity": "c"}])

    assert set(pacer._identities) == {"c"}


def test_identities_with_recent_events_are_kept():
    fake = FakeTime(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=None, per_identity=RateLimit(5, 60)), fake)
    pacer.acquire([{"identity": "a"}])
    fake.now += 59
    pacer.acquire([{"identity": "b"}])

    fake.now += 30  # "a" is 89 s old (gone), "b" only 30 s (kept)
    pacer.acquire([{"identity": "c"}])

    assert set(pacer._identities) == {"b", "c"}


# --- disabled pacing and cancellation ---------------------------------------------------------


def test_disabled_pacing_never_sleeps():
    fake = FakeTime(start=5000.0, positive_sleeps=True)
    pacer = make_pacer(Pacing(per_app=None, per_identity=None), fake)

    assert not pacer.enabled
    for _ in range(1000):
        assert pacer.acquire([{"identity": "a", "event": "e"}] * 50)

    assert fake.sleeps == []
    assert pacer.waited_seconds == 0.0


def test_cancelled_sleep_makes_acquire_return_false():
    fake = FakeTime(start=5000.0, keep_going=False, positive_sleeps=True)
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
