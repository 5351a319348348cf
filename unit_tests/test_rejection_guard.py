"""RejectionGuard: a sync ends when Heap refuses most records, never for a few bad rows."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_heap_analytics.rejection_guard import (
    MIN_REFUSED,
    RECENT_RECORDS,
    HeapRefusesMost,
    RejectionGuard,
)


def refuse(guard: RejectionGuard, times: int) -> None:
    for _ in range(times):
        guard.refused("HTTP 400: properties should be object")


def test_refusals_alone_trip_the_guard_at_the_minimum():
    guard = RejectionGuard()
    refuse(guard, MIN_REFUSED - 1)
    guard.check()
    refuse(guard, 1)
    with pytest.raises(HeapRefusesMost) as raised:
        guard.check()
    assert str(raised.value).startswith(f"Heap refused {MIN_REFUSED} of the last {MIN_REFUSED}")
    assert "properties should be object" in str(raised.value)


def test_a_few_bad_rows_among_good_ones_never_trip_it():
    guard = RejectionGuard()
    for _ in range(200):
        guard.accepted(99)
        refuse(guard, 1)
    guard.check()


def test_refusals_must_outnumber_acceptances_in_the_recent_window():
    guard = RejectionGuard()
    guard.accepted(20)
    refuse(guard, 20)
    guard.check()  # a tie is not a majority
    refuse(guard, 1)
    with pytest.raises(HeapRefusesMost):
        guard.check()


def test_old_acceptances_leave_the_window_so_a_sync_gone_bad_stops_too():
    guard = RejectionGuard()
    guard.accepted(1_000_000)
    refuse(guard, RECENT_RECORDS // 2)
    guard.check()
    refuse(guard, 1)
    with pytest.raises(HeapRefusesMost) as raised:
        guard.check()
    assert raised.value.judged == RECENT_RECORDS


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 1000)), max_size=60))
def test_the_guard_trips_exactly_when_the_rule_says(events):
    """Checked against a plain record-by-record model of the rule."""
    guard = RejectionGuard()
    recent: list[bool] = []
    tripped = False
    for refused, records in events:
        for _ in range(records if not refused else 1):
            recent.append(refused)
        if refused:
            guard.refused("HTTP 400")
        else:
            guard.accepted(records)
        recent = recent[-RECENT_RECORDS:]
        refusals = sum(recent)
        if refused and refusals >= MIN_REFUSED and refusals > len(recent) - refusals:
            tripped = True
    if tripped:
        with pytest.raises(HeapRefusesMost):
            guard.check()
    else:
        guard.check()
