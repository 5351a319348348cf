"""Delivery under faults: the real CLI against the sandbox's fault injection."""

from __future__ import annotations

from collections import Counter

import pytest

from integration_tests.conftest import lines, record_line, run_write, state_line
from integration_tests.test_bulk import config, item_ns, records_with_states


def error_of(run) -> dict:
    (trace,) = run.of_type("TRACE")
    return trace["trace"]["error"]


def test_transient_faults_are_retried_until_every_record_is_delivered(sandbox, tmp_path):
    sandbox.set_faults(
        error_500_rate=0.15, error_429_rate=0.10, retry_after=[0, 1], drop_rate=0.05, seed=11
    )
    messages = records_with_states(3200, state_every=400)
    run = run_write(tmp_path, config(sandbox.url, batch_size=100), messages)
    assert run.returncode == 0, run.stderr
    counters = sandbox.counters()
    assert counters["injected_500"] and counters["injected_429"] and counters["dropped"]
    assert Counter(item_ns(sandbox.accepted("track"))) == Counter(range(1, 3201))
    assert [s["stream"]["stream_state"]["v"] for s in run.states] == list(range(400, 3201, 400))
    assert "Total Messages: 3208. Total Records: 3200. Total loaded: 3200." in run.logs
    (summary,) = [log for log in run.logs if log.startswith("Sync summary")]
    assert "HTTP 500 from Heap" in summary and "HTTP 429 from Heap" in summary


def test_lost_answers_do_not_duplicate_events(sandbox, tmp_path):
    """Heap stored the batch but the answer was lost: the retry carries the same keys."""
    sandbox.set_faults(drop_rate=0.3, drop_after_store=True, seed=3)
    run = run_write(tmp_path, config(sandbox.url, batch_size=50), records_with_states(1000))
    assert run.returncode == 0, run.stderr
    assert sandbox.counters()["duplicates_ignored"] > 0
    assert sorted(item_ns(sandbox.accepted("track"))) == list(range(1, 1001))


def test_one_bad_item_among_999_good_ones_is_isolated(sandbox, tmp_path):
    sandbox.set_faults(reject_marker="refuse-me")
    rows = [
        record_line({**record_of(n), "plan": "refuse-me" if n == 500 else "pro"})
        for n in range(1, 1001)
    ]
    run = run_write(tmp_path, config(sandbox.url), lines(*rows, state_line(1000)))
    assert run.returncode == 0, run.stderr
    accepted = item_ns(sandbox.accepted("track"))
    assert sorted(accepted) == [n for n in range(1, 1001) if n != 500]
    assert any(log.endswith("Total loaded: 999.") for log in run.logs)
    refusal = "HTTP 400: events refused by the sandbox reject_marker rule"
    assert f"Row 500 rejected by Heap ({refusal})." in run.logs
    # the batch, 20 single-record probes, the rest, then a binary split: not one request per item
    assert len(sandbox.requests_log()) <= 1 + 20 + 1 + 2 * 10
    assert len(run.states) == 1


@pytest.mark.parametrize("batch_size, states", [(1000, [50]), (10, [30, 60]), (1, [3])])
def test_a_sync_heap_refuses_entirely_fails_after_a_bounded_number_of_requests(
    sandbox, tmp_path, batch_size, states
):
    """Every request answered 400: not 'Total loaded: 0' and success after ~2 requests per row."""
    sandbox.set_faults(fixed_status=400)
    rows = [record_line(record_of(n)) for n in range(1, 101)]
    for at in sorted(states, reverse=True):
        rows.insert(at, state_line(at))
    run = run_write(
        tmp_path,
        config(sandbox.url, batch_size=batch_size, max_concurrent_requests=1),
        lines(*rows),
    )
    assert run.returncode == 1
    error = error_of(run)
    assert error["failure_type"] == "config_error"
    assert error["message"].startswith(
        {  # the first batch (cut at the first state) and its probes, or 30 records
            1000: "Heap refused at least half of the last 50 records it judged, as estimated "
            "from 10 records sent alone at spread positions, 10 of them refused",
            10: "Heap refused 20 of the last 30 records it judged",  # the third batch untried
            1: "Heap refused 30 of the last 30 records it judged",
        }[batch_size]
    )
    assert run.states == []
    assert len(sandbox.requests_log()) <= {1000: 11, 10: 23, 1: 30}[batch_size]
    assert any(log.endswith("Total loaded: 0.") for log in run.logs)


def test_a_sync_heap_refuses_mostly_fails_but_keeps_states_of_what_was_delivered(sandbox, tmp_path):
    """The first 100 records load; from then on Heap refuses every record."""
    sandbox.set_faults(reject_marker="refuse-me")
    rows = [record_line(record_of(n)) for n in range(1, 101)] + [state_line(100)]
    rows += [record_line({**record_of(n), "plan": "refuse-me"}) for n in range(101, 1001)]
    rows.append(state_line(1000))
    run = run_write(
        tmp_path, config(sandbox.url, batch_size=100, max_concurrent_requests=1), lines(*rows)
    )
    assert run.returncode == 1
    assert error_of(run)["message"].startswith("Heap refused")
    assert [s["stream"]["stream_state"]["v"] for s in run.states] == [100]
    assert sorted(item_ns(sandbox.accepted("track"))) == list(range(1, 101))


def record_of(n: int) -> dict:
    return {"user": f"user-{n}", "event": "Signed Up", "at": 1666325394 + n, "n": n}


@pytest.mark.parametrize("status, field", [(404, "base_url"), (401, "app_id"), (403, "app_id")])
def test_configuration_failures_stop_the_sync_at_once(sandbox, tmp_path, status, field):
    sandbox.set_faults(fixed_status=status)
    run = run_write(tmp_path, config(sandbox.url, batch_size=10), records_with_states(500, 50))
    assert run.returncode == 1
    error = error_of(run)
    assert error["failure_type"] == "config_error"
    assert f"'{field}'" in error["message"]
    assert run.states == []
    assert any(log.endswith("Total loaded: 0.") for log in run.logs)
    assert len(sandbox.requests_log()) <= 4, "stops instead of trying row after row"


@pytest.mark.parametrize(
    "base_url, reason",
    [("https://heap-host-that-does-not-exist.invalid", "DNS"), ("tls", "TLS")],
)
def test_dns_and_tls_failures_are_config_errors(sandbox, tmp_path, base_url, reason):
    if base_url == "tls":  # https:// to a plain-HTTP server: the TLS handshake fails
        base_url = sandbox.url.replace("http://", "https://")
    run = run_write(tmp_path, config(base_url), records_with_states(20))
    assert run.returncode == 1
    error = error_of(run)
    assert error["failure_type"] == "config_error" and reason in error["message"]
    assert "'base_url'" in error["message"]


def test_exhausted_retries_fail_with_a_transient_error_and_no_early_states(sandbox, tmp_path):
    sandbox.set_faults(error_500_rate=1.0)
    run = run_write(
        tmp_path,
        config(sandbox.url, batch_size=10, max_retry_seconds=2),
        records_with_states(40, 10),
    )
    assert run.returncode == 1
    error = error_of(run)
    assert error["failure_type"] == "transient_error"
    assert "max_retry_seconds" in error["message"]
    assert run.states == []
    assert any(log.endswith("Total loaded: 0.") for log in run.logs)


def test_a_rerun_sends_identical_idempotency_keys(sandbox, tmp_path):
    messages = records_with_states(300, state_every=100)
    for _ in range(2):
        assert run_write(tmp_path, config(sandbox.url, batch_size=40), messages).returncode == 0
    keys = [
        event["idempotency_key"]
        for entry in sandbox.requests_log()
        for event in entry["body"]["events"]
    ]
    counts = Counter(keys)
    assert len(counts) == 300 and set(counts.values()) == {2}
    assert len(sandbox.accepted("track")) == 300


def test_the_idempotency_key_column_is_sent_as_the_key(sandbox, tmp_path):
    api = {**config("x")["api"], "idempotency_key_column": "n"}
    run = run_write(tmp_path, {**config(sandbox.url), "api": api}, records_with_states(5))
    assert run.returncode == 0
    assert sorted(e["idempotency_key"] for e in sandbox.accepted("track")) == list("12345")


def test_no_record_contents_reach_stdout_or_stderr_whatever_goes_wrong(sandbox, tmp_path):
    marker = "PII-MARKER-5e2b"
    sandbox.set_faults(
        reject_marker=f"{marker}-refused", error_500_rate=0.2, retry_after=0, drop_rate=0.1, seed=5
    )
    rows = []
    for n in range(1, 301):
        data = {"user": f"{marker}-user-{n}", "event": f"{marker}-event", "at": f"{marker}", "n": n}
        if n % 3 == 0:
            data["at"] = 1666325394 + n  # valid timestamp
        if n % 10 == 0:
            data["plan"] = f"{marker}-refused"  # Heap refuses it
        if n % 7 == 0:
            data.pop("user")  # invalid: no identity
        rows.append(record_line(data))
    rows.insert(50, '{"type": "RECORD", "record": {"stream": "users", "data": {"x": "' + marker)
    rows.insert(60, '{"type": "NOT_A_TYPE", "' + marker + '": 1}')
    api = {**config("x")["api"], "property_columns": "*"}
    run = run_write(tmp_path, {**config(sandbox.url, batch_size=20), "api": api}, lines(*rows))
    assert run.returncode == 0, run.stderr
    assert sandbox.accepted("track"), "some records were delivered"
    (summary,) = [log for log in run.logs if log.startswith("Sync summary")]
    assert "invalid records skipped" in summary and "rejected by Heap" in summary
    assert "unparseable input lines skipped: 2" in summary
    assert marker not in run.stdout
    assert marker not in run.stderr
