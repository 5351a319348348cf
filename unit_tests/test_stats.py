"""SyncStats: 0.1.0's totals line, the final summary and the progress line."""

from __future__ import annotations

import re
from collections import Counter
from types import SimpleNamespace

import pytest

from destination_heap_analytics import stats as stats_module
from destination_heap_analytics.delivery import DeliveryStats, Rejection
from destination_heap_analytics.stats import InputStats, SyncStats
from destination_heap_analytics.transformer import TransformStats

STARTED = 1000.0


@pytest.fixture
def clock(monkeypatch) -> SimpleNamespace:
    """The stats module's clock, set by the test: `clock.now`."""
    fake = SimpleNamespace(now=STARTED)
    monkeypatch.setattr(stats_module, "time", SimpleNamespace(monotonic=lambda: fake.now))
    return fake


def make_stats() -> SyncStats:
    return SyncStats(InputStats(), DeliveryStats(), TransformStats(), started=STARTED)


def test_totals_line_is_exactly_010s_line():
    stats = make_stats()
    stats.messages = 12
    stats.records = 9
    stats.delivery.count_delivered(7)

    assert stats.totals_line() == "Total Messages: 12. Total Records: 9. Total loaded: 7."


def test_totals_line_of_an_empty_sync():
    assert make_stats().totals_line() == "Total Messages: 0. Total Records: 0. Total loaded: 0."


def test_summary_line_lists_every_counter_with_its_reasons(clock):
    stats = make_stats()
    stats.invalid.update({"user is missing or null": 3, "event is blank": 1})
    stats.delivery.count_rejection(Rejection(row=4, status=400, message="bad property"))
    stats.delivery.count_rejection(Rejection(row=8, status=400, message="bad property"))
    stats.ignored_streams["orders"] += 5
    stats.input.skip("not valid JSON")
    stats.input.skip("not valid UTF-8")
    stats.input.repaired_lines = 3
    stats.transform.truncated_values = 6
    stats.transform.drop("reserved property 'id'")
    for _ in range(11):
        stats.delivery.count_request()
    stats.delivery.count_retry("HTTP 503 from Heap")
    stats.delivery.count_retry("HTTP 503 from Heap")
    stats.delivery.count_retry("HTTP 429 from Heap")
    stats.states_emitted = 4
    clock.now = STARTED + 12.5

    line = stats.summary_line(paced_seconds=3.26)

    assert line == (
        "Sync summary: "
        "invalid records skipped: 4 (user is missing or null: 3, event is blank: 1); "
        "rejected by Heap: 2 (HTTP 400: bad property: 2); "
        "ignored (stream not in catalog): 5 (orders: 5); "
        "unparseable input lines skipped: 2 (not valid JSON: 1, not valid UTF-8: 1); "
        "lone surrogates replaced by U+FFFD: 3 lines; "
        "values truncated to 1023 characters: 6; "
        "properties dropped: 1 (reserved property 'id': 1); "
        "requests: 11; "
        "retries: 3 (HTTP 503 from Heap: 2, HTTP 429 from Heap: 1); "
        "states emitted: 4; "
        "waited for rate limits: 3.3 s; "
        "elapsed: 12.50 s."
    )


def test_summary_line_shows_zero_without_reasons_for_empty_counters(clock):
    line = make_stats().summary_line(paced_seconds=0)

    for counter in (
        "invalid records skipped",
        "rejected by Heap",
        "ignored (stream not in catalog)",
        "unparseable input lines skipped",
        "values truncated to 1023 characters",
        "properties dropped",
        "requests",
        "retries",
        "states emitted",
    ):
        assert re.search(re.escape(counter) + r": 0[;.]", line), counter
    assert "()" not in line


def test_progress_line_reports_counts_rate_and_batches_in_flight(clock):
    stats = make_stats()
    stats.records = 260
    stats.invalid.update({"user is missing or null": 2, "event is blank": 3})
    stats.delivery.count_delivered(250)
    stats.delivery.count_rejection(Rejection(row=1, status=400, message="x"))
    stats.delivery.count_retry("HTTP 500 from Heap")
    for _ in range(4):
        stats.delivery.count_request()
    clock.now = STARTED + 10

    line = stats.progress_line(in_flight=2)

    assert line == (
        "Progress: 260 records read, 250 loaded (25 records/s), 5 invalid, 1 rejected, "
        "1 retries, 4 requests, 2 batches in flight."
    )


def test_progress_line_rate_is_zero_before_any_time_has_passed(clock):
    stats = make_stats()
    stats.delivery.count_delivered(10)

    assert "10 loaded (0 records/s)" in stats.progress_line(in_flight=0)


def test_elapsed_counts_from_the_start(clock):
    stats = make_stats()
    clock.now = STARTED + 2.5

    assert stats.elapsed == pytest.approx(2.5)


def test_reasons_are_listed_most_frequent_first(clock):
    stats = make_stats()
    stats.invalid = Counter({"rare": 1, "common": 5, "middle": 2})

    assert "invalid records skipped: 8 (common: 5, middle: 2, rare: 1)" in stats.summary_line(0)
