"""Last write wins per identity across streams (issue 14, item 2): through the real CLI against
the sandbox, a retried earlier record of one stream never lands after a later record of
another stream for the same user."""

from __future__ import annotations

import random

import pytest

from integration_tests.conftest import lines, record_line, run_write
from integration_tests.test_refusals import catalog

USER_PROPERTIES = {
    "api_type": "add_user_properties",
    "identity_column": "email",
    "property_columns": "plan",
}
FAIL_FIRST_ONLY = (0.1, 31)
"""error_500_rate and seed: with these, the sandbox answers 500 to its first request only (its
random draws for the next eleven requests are all above the rate)."""


def test_the_seed_fails_the_first_request_only():
    rate, seed = FAIL_FIRST_ONLY
    draws = random.Random(seed)
    assert [draws.random() < rate for _ in range(12)] == [True] + [False] * 11


@pytest.mark.parametrize("batch_size", [1, 1000])
def test_a_retried_old_value_in_one_stream_does_not_overwrite_a_newer_one_from_another(
    sandbox, tmp_path, batch_size
):
    rate, seed = FAIL_FIRST_ONLY
    sandbox.set_faults(error_500_rate=rate, seed=seed)
    config = {
        "app_id": "11",
        "base_url": sandbox.url,
        "api": USER_PROPERTIES,
        "max_events_per_minute": 0,
        "batch_size": batch_size,
    }
    records = [
        record_line({"email": "u", "plan": "old"}, "a"),
        record_line({"email": "other", "plan": "a-only"}, "a"),
        record_line({"email": "u", "plan": "new"}, "b"),
    ]
    if batch_size == 1:  # a request of its own would race old's to be Heap's first
        del records[1]
    messages = lines(*records)
    run = run_write(tmp_path, config, messages, catalog(tmp_path, "a", "b"))

    assert run.returncode == 0, run.stderr
    first = sandbox.requests_log()[0]
    assert first["status"] == 500 and "old" in str(first["body"]), "Heap failed old's request"
    assert sandbox.counters()["injected_500"] == 1
    plans = [item["properties"]["plan"] for item in sandbox.accepted("add_user_properties")]
    assert plans.index("new") > plans.index("old"), "the later record landed last"
    assert [p for p in plans if p in ("old", "new")] == ["old", "new"]
