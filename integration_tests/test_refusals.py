"""Heap refusing records, through the real CLI against the sandbox (issue 15): a few bad rows
wherever they sit never stop a sync; a sync Heap refuses entirely, or from some point on, stops
with a config_error after a bounded number of requests and emits no state past the refusals."""

from __future__ import annotations

import pytest

from integration_tests.conftest import lines, record_line, run_write, state_line, write_json
from integration_tests.test_bulk import config, item_ns

MARKER = "refuse-me"
REFUSAL = "HTTP 400: events refused by the sandbox reject_marker rule"


def catalog(tmp_path, *streams: str):
    entry = {"json_schema": {"type": "object"}, "supported_sync_modes": ["full_refresh"]}
    return write_json(
        tmp_path,
        "catalog.json",
        {
            "streams": [
                {
                    "stream": {"name": name, **entry},
                    "sync_mode": "full_refresh",
                    "destination_sync_mode": "append",
                }
                for name in streams
            ]
        },
    )


def row(n: int, refused: bool = False, stream: str = "users") -> str:
    data = {"user": f"user-{n}", "event": "Signed Up", "at": 1666325394 + n, "n": n}
    return record_line({**data, "plan": MARKER if refused else "pro"}, stream)


def error_of(run) -> dict:
    (trace,) = run.of_type("TRACE")
    return trace["trace"]["error"]


def rejected_rows(run) -> list[int]:
    prefix = "Row "
    return [
        int(log[len(prefix) :].split(" ", 1)[0])
        for log in run.logs
        if log.startswith(prefix) and f" rejected by Heap ({REFUSAL})." in log
    ]


# --- the four cases of issue 15: all complete ---------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [set(range(1, 11)), set(range(1, 21)), set(range(1, 20, 2))],
    ids=["rows 1-10 of a 1000-row batch", "20 at the head", "10 interleaved among the first 19"],
)
def test_a_few_refused_rows_at_the_head_of_a_batch_are_skipped(sandbox, tmp_path, bad):
    sandbox.set_faults(reject_marker=MARKER)
    rows = [row(n, n in bad) for n in range(1, 1001)]
    run = run_write(tmp_path, config(sandbox.url), lines(*rows, state_line(1000)))

    assert run.returncode == 0, run.stderr
    assert sorted(item_ns(sandbox.accepted("track"))) == sorted(set(range(1, 1001)) - bad)
    logged = rejected_rows(run)
    assert set(logged) <= bad and len(logged) == min(10, len(bad)), "10 per reason are logged"
    (summary,) = [log for log in run.logs if log.startswith("Sync summary")]
    assert f"rejected by Heap: {len(bad)} (" in summary
    assert [state["stream"]["stream_state"]["v"] for state in run.states] == [1000]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_refused_rows_at_the_head_of_a_second_stream_are_skipped(sandbox, tmp_path, concurrency):
    """Stream a: 3,000 good rows; stream b: 4,000 rows, the first 12 refused (0.3% overall).
    With one request at a time, b's first batch is split before its other batches are sent."""
    sandbox.set_faults(reject_marker=MARKER)
    rows = [row(n, stream="a") for n in range(1, 3001)] + [state_line(3000, "a")]
    rows += [row(n, n <= 3012, "b") for n in range(3001, 7001)] + [state_line(7000, "b")]
    run = run_write(
        tmp_path,
        config(sandbox.url, max_concurrent_requests=concurrency),
        lines(*rows),
        catalog(tmp_path, "a", "b"),
    )

    assert run.returncode == 0, run.stderr
    assert sorted(item_ns(sandbox.accepted("track"))) == list(range(1, 3001)) + list(
        range(3013, 7001)
    )
    logged = rejected_rows(run)
    assert set(logged) <= set(range(3001, 3013)) and len(logged) == 10
    assert [state["stream"]["stream_state"]["v"] for state in run.states] == [3000, 7000]


@pytest.mark.parametrize("concurrency", [1, 16])
def test_refused_rows_spread_over_several_streams_are_skipped(sandbox, tmp_path, concurrency):
    """Three streams, mixed record by record, each with 5% refused rows at its head."""
    sandbox.set_faults(reject_marker=MARKER, latency_ms=2)
    streams = ("a", "b", "c")
    rows = [row(n, n <= 150, streams[n % 3]) for n in range(1, 3001)]
    run = run_write(
        tmp_path,
        config(sandbox.url, max_concurrent_requests=concurrency),
        lines(*rows),
        catalog(tmp_path, *streams),
    )

    assert run.returncode == 0, run.stderr
    assert sorted(item_ns(sandbox.accepted("track"))) == list(range(151, 3001))
    assert any(log.endswith("Total loaded: 2850.") for log in run.logs)


# --- a sync Heap refuses: stopped, within bounds --------------------------------------------------


@pytest.mark.parametrize(
    "batch_size, concurrency, streams",
    [(1000, 16, 3), (1000, 1, 1), (10, 16, 3), (10, 1, 1), (1, 16, 3), (2, 4, 1)],
)
def test_a_sync_heap_refuses_entirely_stops_within_50_requests(
    sandbox, tmp_path, batch_size, concurrency, streams
):
    sandbox.set_faults(fixed_status=400, latency_ms=2)
    names = "abc"[:streams]
    records = max(500, (concurrency + 2) * batch_size * streams)
    rows = []
    for n in range(1, records + 1):
        rows.append(row(n, stream=names[n % streams]))
        if n % 50 == 0:
            rows.append(state_line(n, names[n % streams]))
    run = run_write(
        tmp_path,
        config(sandbox.url, batch_size=batch_size, max_concurrent_requests=concurrency),
        lines(*rows),
        catalog(tmp_path, *names),
    )

    assert run.returncode == 1
    error = error_of(run)
    assert error["failure_type"] == "config_error"
    assert error["message"].startswith("Heap refused ")
    assert "'api' mapping and 'app_id'" in error["message"]
    assert len(sandbox.requests_log()) <= 50
    assert run.states == []
    assert any(log.endswith("Total loaded: 0.") for log in run.logs)


@pytest.mark.parametrize("batch_size, bound", [(1000, 11), (100, 700)])
def test_a_sync_that_turns_bad_stops_and_keeps_only_the_states_of_what_was_delivered(
    sandbox, tmp_path, batch_size, bound
):
    """3,000 rows load; from then on Heap refuses every record. A state every 1,000 rows, so
    that no state cuts a batch short (a state sends the batch filling before it)."""
    sandbox.set_faults(reject_marker=MARKER)
    rows = []
    for n in range(1, 8001):
        rows.append(row(n, refused=n > 3000))
        if n % 1000 == 0:
            rows.append(state_line(n))
    run = run_write(
        tmp_path,
        config(sandbox.url, batch_size=batch_size, max_concurrent_requests=1),
        lines(*rows),
    )

    assert run.returncode == 1
    assert error_of(run)["failure_type"] == "config_error"
    assert [s["stream"]["stream_state"]["v"] for s in run.states] == [1000, 2000, 3000]
    assert sorted(item_ns(sandbox.accepted("track"))) == list(range(1, 3001))
    good_requests = 3000 // batch_size
    assert len(sandbox.requests_log()) - good_requests <= bound
