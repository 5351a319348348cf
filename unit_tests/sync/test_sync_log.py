"""SyncLog and SyncStats: 0.1.0's totals line, the summary (with per-stream lines), the progress
line on an injected clock, and the bounded per-row lines."""

from __future__ import annotations

import re

from airbyte_cdk.models import AirbyteMessage, Level

from destination_heap_analytics.config.settings import ApiType
from destination_heap_analytics.counters import (
    Accepted,
    InputStats,
    Rejection,
    RouteStats,
    SyncStats,
)
from destination_heap_analytics.heap.client import Receipt
from destination_heap_analytics.sync.sync_log import (
    LOGGED_ROWS_PER_REASON,
    PROGRESS_INTERVAL_SECONDS,
    SyncLog,
    progress_line,
    summary_line,
    totals_line,
)
from unit_tests.fakes import FakeClock

STARTED = 1000.0


def make_stats(*streams: str) -> SyncStats:
    stats = SyncStats(InputStats(), started=STARTED)
    for name in streams or ("users",):
        stats.routes.append(RouteStats((None, name), ApiType.TRACK))
    return stats


def texts(messages: list[AirbyteMessage]) -> list[str]:
    return [m.log.message for m in messages]


def test_totals_line_is_exactly_010s_line_summed_over_streams():
    stats = make_stats("users", "orders")
    stats.messages, stats.records = 12, 9
    stats.routes[0].delivery.count_delivered(4)
    stats.routes[1].delivery.count_delivered(3)

    assert totals_line(stats) == "Total Messages: 12. Total Records: 9. Total loaded: 7."


def test_totals_line_of_an_empty_sync():
    assert totals_line(SyncStats(InputStats(), started=0)) == (
        "Total Messages: 0. Total Records: 0. Total loaded: 0."
    )


def test_summary_line_lists_every_counter_with_its_reasons():
    stats = make_stats()
    route = stats.routes[0]
    route.invalid.update({"user is missing or null": 3, "event is blank": 1})
    route.delivery.count_rejection(Rejection(row=4, status=400, message="bad property"))
    route.delivery.count_rejection(Rejection(row=8, status=400, message="bad property"))
    stats.ignored_streams["orders"] += 5
    stats.input.skip("not valid JSON")
    stats.input.skip("not valid UTF-8")
    stats.input.repaired_lines = 3
    route.transform.truncated_values = 6
    route.transform.drop("reserved property 'id'")
    for _ in range(11):
        route.delivery.count_request()
    route.delivery.count_retry("HTTP 503 from Heap")
    route.delivery.count_retry("HTTP 503 from Heap")
    route.delivery.count_retry("HTTP 429 from Heap")
    stats.states_emitted = 4

    line = summary_line(stats, paced_seconds=3.26, now=STARTED + 12.5)

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


def test_summary_line_shows_zero_without_reasons_for_empty_counters():
    line = summary_line(make_stats(), paced_seconds=0, now=STARTED)

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
    assert "()" not in line and "without a mapping" not in line


def test_summary_adds_one_line_per_stream_when_there_are_several():
    stats = make_stats("users", "orders")
    stats.routes[0].records = 3
    stats.routes[0].delivery.count_delivered(2)
    stats.routes[0].invalid["user is missing or null"] += 1
    stats.routes[1] = RouteStats(("shop", "orders"), ApiType.ADD_ACCOUNT_PROPERTIES)
    stats.unmapped_streams["audit"] += 2
    log = SyncLog(stats, FakeClock(STARTED), [])

    lines = texts(log.summary(paced_seconds=0))

    assert lines[0].startswith("Total Messages:")
    assert "ignored (stream without a mapping): 2 (audit: 2)" in lines[1]
    assert lines[2:] == [
        "Stream 'users' (track): 3 records, 2 loaded, invalid 1 (user is missing or null: 1), "
        "rejected 0, 0 requests.",
        "Stream 'shop.orders' (add_account_properties): 0 records, 0 loaded, invalid 0, "
        "rejected 0, 0 requests.",
    ]


def test_one_stream_gets_no_per_stream_line():
    assert len(SyncLog(make_stats(), FakeClock(), []).summary(0)) == 2


def test_progress_line_reports_counts_rate_and_batches_in_flight():
    stats = make_stats()
    stats.records = 260
    route = stats.routes[0]
    route.invalid.update({"user is missing or null": 2, "event is blank": 3})
    route.delivery.count_delivered(250)
    route.delivery.count_rejection(Rejection(row=1, status=400, message="x"))
    route.delivery.count_retry("HTTP 500 from Heap")
    for _ in range(4):
        route.delivery.count_request()

    line = progress_line(stats, in_flight=2, now=STARTED + 10)

    assert line == (
        "Progress: 260 records read, 250 loaded (25 records/s), 5 invalid, 1 rejected, "
        "1 retries, 4 requests, 2 batches in flight."
    )


def test_progress_line_counts_per_stream_when_there_are_several():
    stats = make_stats("users", "orders")
    stats.routes[0].records, stats.routes[1].records = 3, 2
    stats.routes[0].delivery.count_delivered(3)

    line = progress_line(stats, in_flight=0, now=STARTED)

    assert line.endswith("By stream: users 3/3 loaded, orders 0/2 loaded.")
    assert "(0 records/s)" in line


def test_progress_line_appears_at_most_every_interval():
    clock = FakeClock(STARTED)
    output: list[AirbyteMessage] = []
    log = SyncLog(make_stats(), clock, output)
    seen = []

    for offset in (1.0, 9.9, 10.0, 12.0, 19.9, 20.0, 20.1, 60.0):
        clock.time = STARTED + offset
        log.progress(in_flight=0)
        seen.append(len(output))

    assert seen == [0, 0, 1, 1, 1, 2, 2, 3]
    assert PROGRESS_INTERVAL_SECONDS == 10.0


def test_rows_are_logged_individually_up_to_the_limit_per_reason():
    output: list[AirbyteMessage] = []
    log = SyncLog(make_stats(), FakeClock(), output)

    for row in range(1, 16):
        log.invalid_row(row, "user is missing or null")
    log.rejected_rows([Rejection(row=99, status=400, message="events properties")])

    lines = texts(output)
    assert len(lines) == LOGGED_ROWS_PER_REASON + 1
    assert lines[0] == "Row 1 skipped as invalid: user is missing or null."
    assert lines[LOGGED_ROWS_PER_REASON - 1].endswith("counted in the summary only.")
    assert lines[-1] == "Row 99 rejected by Heap (HTTP 400: events properties)."
    assert all(m.log.level == Level.WARN for m in output)


def deleting_stats() -> SyncStats:
    stats = SyncStats(InputStats(), started=STARTED)
    stats.routes.append(RouteStats((None, "gone"), ApiType.DELETE_USERS))
    return stats


def test_each_accepted_deletion_request_is_logged_with_its_id_and_size():
    stats = deleting_stats()
    output: list[AirbyteMessage] = []
    log = SyncLog(stats, FakeClock(start=STARTED), output)
    log.deletions_accepted("gone", [Accepted(Receipt("req-1"), 10_000), Accepted(Receipt(None), 5)])
    assert texts(output) == [
        "Heap accepted deletion request req-1 of 10000 users of stream 'gone'.",
        "Heap accepted a deletion request of 5 users of stream 'gone'; its answer carried no "
        "deletion_request_id in the expected form, so none is logged.",
    ]
    assert all(m.log.level == Level.INFO for m in output)


def test_the_summary_says_what_heap_accepted_to_delete():
    stats = deleting_stats()
    delivery = stats.routes[0].delivery
    delivery.count_delivered(25_000)
    for size in (10_000, 10_000, 5_000):
        delivery.count_receipt(Accepted(Receipt("r"), size))
    lines = texts(SyncLog(stats, FakeClock(start=STARTED), []).summary(0.0))
    assert lines[-1] == (
        "Deletions: Heap accepted 3 deletion requests for 25000 users (each request's "
        "deletion_request_id is logged above)."
    )


def test_a_dry_run_says_what_would_be_deleted():
    stats = deleting_stats()
    stats.routes[0].records = 3
    stats.routes[0].delivery.count_planned(3)
    lines = texts(SyncLog(stats, FakeClock(start=STARTED), [], dry_run=True).summary(0.0))
    stream_line = "'gone' (delete_users): 3 records, would delete 3 users in 1 requests"
    assert any(stream_line in line for line in lines)
    assert not any(line.startswith("Deletions:") for line in lines)
