"""Bulk API, concurrency, state timing and pacing: the real CLI against the sandbox."""

from __future__ import annotations

import os
import subprocess
from collections import Counter

import pytest

from integration_tests.conftest import (
    CATALOG,
    ROOT,
    cli_command,
    lines,
    record_line,
    run_write,
    state_line,
    stream_write,
    write_json,
)

APIS = {
    "track": {
        "api_type": "track",
        "identity_column": "user",
        "event_column": "event",
        "timestamp_column": "at",
        "property_columns": "n,plan",
    },
    "add_user_properties": {
        "api_type": "add_user_properties",
        "identity_column": "user",
        "property_columns": "n,plan",
    },
    "add_account_properties": {
        "api_type": "add_account_properties",
        "account_id_column": "user",
        "property_columns": "n,plan",
    },
}


def config(base_url: str, api_type: str = "track", **overrides) -> dict:
    """Pacing off unless a test sets it: Heap's default 15,000/min would make tests slow."""
    return {
        "app_id": "11",
        "base_url": base_url,
        "api": APIS[api_type],
        "max_events_per_minute": 0,
        **overrides,
    }


def record(n: int, users: int | None = None) -> dict:
    user = f"user-{n % users if users else n}"
    return {"user": user, "event": "Signed Up", "at": 1666325394 + n, "n": n, "plan": "pro"}


def records_with_states(count: int, state_every: int = 0, users: int | None = None) -> str:
    parts = []
    for n in range(1, count + 1):
        parts.append(record_line(record(n, users)))
        if state_every and n % state_every == 0:
            parts.append(state_line(n))
    return lines(*parts)


def item_ns(items: list[dict]) -> list[int]:
    return [item["properties"]["n"] for item in items]


@pytest.mark.parametrize("api_type", sorted(APIS))
def test_bulk_bodies_hold_at_most_1000_items_under_the_api_array_key(sandbox, tmp_path, api_type):
    run = run_write(tmp_path, config(sandbox.url, api_type), records_with_states(2500))
    assert run.returncode == 0, run.stderr
    array_key = {"track": "events", "add_user_properties": "users"}.get(api_type, "accounts")
    bodies = [entry["body"] for entry in sandbox.requests_log()]
    assert sorted(len(body[array_key]) for body in bodies) == [500, 1000, 1000]
    assert all(set(body) == {"app_id", array_key} for body in bodies)
    assert sorted(item_ns(sandbox.accepted(api_type))) == list(range(1, 2501))


@pytest.mark.parametrize("api_type", sorted(APIS))
def test_batch_size_1_bodies_are_010_single_item_bodies(sandbox, tmp_path, api_type):
    run = run_write(tmp_path, config(sandbox.url, api_type, batch_size=1), records_with_states(5))
    assert run.returncode == 0, run.stderr
    bodies = [entry["body"] for entry in sandbox.requests_log()]
    assert len(bodies) == 5 and all(entry["form"] == "single" for entry in sandbox.requests_log())
    key = "account_id" if api_type == "add_account_properties" else "identity"
    expected_keys = {
        # 0.1.0's body: {"app_id", **payload}; a track event now also carries its
        # idempotency_key (the reliability issue requires one on every event).
        "track": ["app_id", "identity", "event", "timestamp", "properties", "idempotency_key"],
        "add_user_properties": ["app_id", "identity", "properties"],
        "add_account_properties": ["app_id", "account_id", "properties"],
    }[api_type]
    for body in bodies:
        assert list(body) == expected_keys
        assert body["app_id"] == "11"
        assert body["properties"] == {"n": body["properties"]["n"], "plan": "pro"}
    assert sorted(body[key] for body in bodies) == [f"user-{n}" for n in range(1, 6)]


@pytest.mark.parametrize("concurrency", [1, 8])
@pytest.mark.parametrize("api_type", ["track", "add_user_properties"])
def test_nothing_is_lost_or_duplicated(sandbox, tmp_path, api_type, concurrency):
    sandbox.set_faults(latency_ms=5)
    overrides = {"batch_size": 50, "max_concurrent_requests": concurrency}
    messages = records_with_states(3000, state_every=170)
    run = run_write(tmp_path, config(sandbox.url, api_type, **overrides), messages)
    assert run.returncode == 0, run.stderr
    assert Counter(item_ns(sandbox.accepted(api_type))) == Counter(range(1, 3001))
    sent = sum(entry["items"] for entry in sandbox.requests_log())
    assert sent == 3000, "every item is sent exactly once when nothing fails"
    assert [s["stream"]["stream_state"]["v"] for s in run.states] == list(range(170, 3001, 170))


def test_states_are_emitted_only_after_their_records_are_acknowledged(sandbox, tmp_path):
    """Reads stdout as it arrives and compares each state with what Heap has at that moment."""
    sandbox.set_faults(latency_ms=40)
    config_path = write_json(
        tmp_path, "c.json", config(sandbox.url, batch_size=100, max_concurrent_requests=4)
    )
    messages = records_with_states(3000, state_every=250)
    seen_states = []
    for message in stream_write(config_path, CATALOG, messages):
        if message["type"] == "STATE":
            covered = message["state"]["stream"]["stream_state"]["v"]
            accepted = set(item_ns(sandbox.accepted("track")))
            assert set(range(1, covered + 1)) <= accepted, f"state {covered} came early"
            seen_states.append(covered)
    assert seen_states == list(range(250, 3001, 250))


def test_user_properties_keep_input_order_per_identity_across_batches(sandbox, tmp_path):
    """Last write wins in Heap: a later batch for a user must not overtake an earlier one, even
    when the earlier one is retried."""
    sandbox.set_faults(error_429_rate=0.3, retry_after=0, seed=7)
    overrides = {"batch_size": 10, "max_concurrent_requests": 8}
    messages = records_with_states(600, state_every=10, users=7)
    run = run_write(tmp_path, config(sandbox.url, "add_user_properties", **overrides), messages)
    assert run.returncode == 0, run.stderr
    per_user: dict[str, list[int]] = {}
    for item in sandbox.accepted("add_user_properties"):
        per_user.setdefault(item["identity"], []).append(item["properties"]["n"])
    assert sandbox.counters()["injected_429"] > 0
    for values in per_user.values():
        assert values == sorted(values)
    assert sum(len(v) for v in per_user.values()) == 600


def test_pacing_keeps_within_the_limit_without_429s(sandbox, tmp_path):
    """A per-minute limit scaled down to 1.2 s windows: the sandbox enforces the same limit."""
    scale = 0.02
    window = 60 * scale
    sandbox.set_faults(rate_limit={"events": 300, "window_seconds": window, "per_identity": None})
    config_path = write_json(
        tmp_path, "c.json", config(sandbox.url, batch_size=100, max_events_per_minute=300)
    )
    run = subprocess.run(
        cli_command("write", "--config", str(config_path), "--catalog", str(CATALOG)),
        input=records_with_states(1500),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "DESTINATION_HEAP_ANALYTICS_PACING_TIME_SCALE": str(scale)},
    )
    assert run.returncode == 0, run.stderr
    assert sandbox.counters()["rate_limited_429"] == 0
    accepted = sandbox.accepted("track")
    assert len(accepted) == 1500
    times = sorted(item["_received_at"] for item in accepted)
    for i, start in enumerate(times):
        in_window = sum(1 for t in times[i : i + 400] if t - start < window)
        assert in_window <= 300
    elapsed = times[-1] - times[0]
    assert elapsed >= (1500 - 300) / 300 * window * 0.9, "pacing spread the requests out"
