"""The real CLI (`python main.py spec|check|write`) as a subprocess against the Heap sandbox."""

from __future__ import annotations

import json

import pytest

from integration_tests.conftest import (
    SAMPLE_CONFIGS,
    SAMPLES,
    lines,
    record_line,
    run_cli,
    run_write,
    sample_config,
    state_line,
    write_json,
)

SAMPLE_MESSAGES = (SAMPLES / "messages.jsonl").read_text()
SAMPLE_RECORDS = [
    json.loads(line)["record"]["data"]
    for line in SAMPLE_MESSAGES.splitlines()
    if '"RECORD"' in line
]
SAMPLE_STATES = [
    json.loads(line)["state"] for line in SAMPLE_MESSAGES.splitlines() if '"STATE"' in line
]


def without_stats(state: dict) -> dict:
    return {k: v for k, v in state.items() if k != "destinationStats"}


def test_spec_lists_the_five_api_types_and_sync_modes():
    run = run_cli("spec")
    assert run.returncode == 0
    (spec,) = run.of_type("SPEC")
    spec = spec["spec"]
    assert set(spec["supported_destination_sync_modes"]) == {"overwrite", "append", "append_dedup"}
    branches = spec["connectionSpecification"]["properties"]["api"]["oneOf"]
    consts = [b["properties"]["api_type"]["const"] for b in branches]
    assert consts == [
        "track",
        "add_user_properties",
        "add_account_properties",
        "identify",
        "delete_users",
    ]
    track = branches[0]["properties"]
    assert track["timestamp_column"]["title"] == "Timestamp Column"


@pytest.mark.parametrize("api_type", sorted(SAMPLE_CONFIGS))
def test_check_succeeds_and_repeated_checks_store_one_preflight_event(sandbox, tmp_path, api_type):
    config = write_json(tmp_path, "c.json", sample_config(api_type, sandbox.url))
    for _ in range(2):
        run = run_cli("check", "--config", str(config))
        assert run.returncode == 0
        assert run.connection_status["status"] == "SUCCEEDED"
    (event,) = sandbox.accepted("track")
    assert event["idempotency_key"] == "airbyte-preflight-check"
    assert [r["path"] for r in sandbox.requests_log()] == ["/api/track", "/api/track"]


@pytest.mark.parametrize(
    "fault, field", [({"fixed_status": 404}, "base_url"), ({"fixed_status": 401}, "app_id")]
)
def test_check_fails_with_a_message_naming_the_field(sandbox, tmp_path, fault, field):
    sandbox.set_faults(**fault)
    config = write_json(tmp_path, "c.json", sample_config("track", sandbox.url))
    run = run_cli("check", "--config", str(config))
    assert run.returncode == 0
    status = run.connection_status
    assert status["status"] == "FAILED"
    assert f"'{field}'" in status["message"]


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"base_url": "http://heapanalytics.com"}, "base_url"),
        (
            {
                "api": {
                    "api_type": "track",
                    "property_columns": "*",
                    "event_column": "e",
                    "identity_column": "a..b",
                }
            },
            "api.identity_column",
        ),
    ],
)
def test_check_reports_bad_config_without_crashing(tmp_path, overrides, field):
    config = write_json(tmp_path, "c.json", {**sample_config("track", "x"), **overrides})
    run = run_cli("check", "--config", str(config))
    assert run.returncode == 0
    status = run.connection_status
    assert status["status"] == "FAILED" and field in status["message"]


def test_check_fails_when_nothing_listens(tmp_path):
    config = write_json(tmp_path, "c.json", sample_config("track", "http://127.0.0.1:9"))
    run = run_cli("check", "--config", str(config))
    status = run.connection_status
    assert status["status"] == "FAILED" and "could not be reached" in status["message"]


def expected_item(api_type: str, record: dict) -> dict:
    """What the sample configs must produce, written out independently of the transformer."""
    if api_type == "track":
        return {
            "identity": record["email"],
            "event": record["identities"]["connection"],
            "timestamp": record["updated_at"],
            "properties": {k: record[k] for k in ("blocked", "created_at", "updated_at", "name")},
        }
    if api_type == "add_user_properties":
        return {
            "identity": record["user_id"],
            "properties": {
                "identities.connection": record["identities"]["connection"],
                "identities.provider": record["identities"]["provider"],
                "created_at": record["created_at"],
                "updated_at": record["updated_at"],
                "name": record["name"],
            },
        }
    return {
        "account_id": record["identities"]["user_id"],
        "properties": {k: record[k] for k in ("family_name", "email_verified", "blocked")},
    }


def sorted_items(items) -> list[dict]:
    return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))


def stored(item: dict) -> dict:
    return {k: v for k, v in item.items() if not k.startswith("_") and k != "idempotency_key"}


@pytest.mark.parametrize("api_type", sorted(SAMPLE_CONFIGS))
def test_write_loads_every_sample_record_and_returns_states_in_order(sandbox, tmp_path, api_type):
    run = run_write(tmp_path, sample_config(api_type, sandbox.url), SAMPLE_MESSAGES)
    assert run.returncode == 0, run.stderr
    accepted = sandbox.accepted(api_type)
    # Batches travel concurrently, so arrival order is free across batches (each identity here
    # appears once; same-identity ordering is tested in test_bulk.py).
    assert sorted_items(stored(item) for item in accepted) == sorted_items(
        expected_item(api_type, record) for record in SAMPLE_RECORDS
    )
    assert {item["_app_id"] for item in accepted} == {"11"}
    assert [without_stats(s) for s in run.states] == SAMPLE_STATES
    assert [s["destinationStats"]["recordCount"] for s in run.states] == [20.0, 20.0, 10.0]
    assert "Total Messages: 53. Total Records: 50. Total loaded: 50." in run.logs
    assert any(log.startswith("Sync summary: invalid records skipped: 0;") for log in run.logs)


def test_track_events_carry_stable_idempotency_keys(sandbox, tmp_path):
    config = sample_config("track", sandbox.url)
    run_write(tmp_path, config, SAMPLE_MESSAGES)
    first = [item["idempotency_key"] for item in sandbox.accepted("track")]
    run = run_write(tmp_path, config, SAMPLE_MESSAGES)
    assert run.returncode == 0
    assert len(set(first)) == 50
    assert len(sandbox.accepted("track")) == 50
    assert sandbox.counters()["duplicates_ignored"] == 50


def test_010_write_returns_states_and_the_totals_line(sandbox, tmp_path):
    # 0.1.0's integration test: [STATE, RECORD, STATE] gives both states and the totals line.
    messages = lines(state_line(1), record_line(SAMPLE_RECORDS[0]), state_line(2))
    run = run_write(tmp_path, sample_config("track", sandbox.url), messages)
    assert [s["stream"]["stream_state"] for s in run.states] == [{"v": 1}, {"v": 2}]
    assert "Total Messages: 3. Total Records: 1. Total loaded: 1." in run.logs


def test_bad_rows_are_skipped_counted_and_never_logged(sandbox, tmp_path):
    marker = "SECRET-MARKER-91c4"
    sandbox.set_faults(reject_marker=marker + "-reject")
    good = {"email": f"{marker}@x.io", "event": f"{marker}-event", "note": marker}
    rows = [
        record_line(good),
        record_line({"event": marker, "note": marker}),  # no identity
        record_line({**good, "email": marker * 20}),  # identity longer than 255
        record_line({**good, "when": f"{marker}-not-a-date"}),  # bad timestamp
        record_line({**good, "note": marker + "-reject"}),  # refused by "Heap"
        '{"type": "RECORD", "record": {"stream": "users", "data": {"x": "' + marker + '"',
        record_line({**good, "n": 2}),
        state_line(marker),
    ]
    config = sample_config(
        "track",
        sandbox.url,
        api={
            "api_type": "track",
            "identity_column": "email",
            "event_column": "event",
            "timestamp_column": "when",
            "property_columns": "*",
        },
    )
    run = run_write(tmp_path, config, lines(*rows))
    assert run.returncode == 0, run.stderr
    assert len(sandbox.accepted("track")) == 2
    assert "Total Messages: 7. Total Records: 6. Total loaded: 2." in run.logs
    (summary,) = [log for log in run.logs if log.startswith("Sync summary")]
    assert "invalid records skipped: 3" in summary
    assert "rejected by Heap: 1" in summary
    assert "unparseable input lines skipped: 1" in summary
    assert any("Row 5 rejected by Heap" in log for log in run.logs)
    assert any(log.startswith("Row 2 skipped as invalid: email is missing") for log in run.logs)
    outside_states = [line for line in run.stdout.split("\n") if '"type": "STATE"' not in line]
    assert len(outside_states) == len(run.stdout.split("\n")) - 1
    assert marker not in "\n".join(outside_states)
    assert marker not in run.stderr


def test_streams_not_in_the_catalog_are_ignored_with_one_warning(sandbox, tmp_path):
    record = SAMPLE_RECORDS[0]
    messages = lines(*(record_line(record, stream="other") for _ in range(3)), record_line(record))
    run = run_write(tmp_path, sample_config("track", sandbox.url), messages)
    assert len(sandbox.accepted("track")) == 1
    warnings = [log for log in run.logs if "not in the configured catalog" in log]
    assert len(warnings) == 1
    assert "ignored (stream not in catalog): 3 (other: 3)" in run.logs[-2]


def test_a_mistyped_column_is_reported_once_with_a_suggestion(sandbox, tmp_path):
    config = sample_config(
        "add_user_properties",
        sandbox.url,
        api={
            "api_type": "add_user_properties",
            "identity_column": "user_id",
            "property_columns": "identities_provider,created_at",
        },
    )
    run = run_write(tmp_path, config, SAMPLE_MESSAGES)
    reports = [log for log in run.logs if "identities_provider" in log]
    assert len(reports) == 1
    assert "Did you mean 'identities.provider'?" in reports[0]


def test_write_with_an_invalid_config_fails_with_a_config_error_trace(tmp_path):
    config = {**sample_config("track", "http://example.com")}
    run = run_write(tmp_path, config, SAMPLE_MESSAGES)
    assert run.returncode == 1
    (trace,) = run.of_type("TRACE")
    assert trace["trace"]["error"]["failure_type"] == "config_error"
    assert "base_url" in trace["trace"]["error"]["message"]
    assert "Traceback" not in run.stdout + run.stderr


def test_sample_run_with_a_bad_row_logs_no_record_contents(sandbox, tmp_path):
    """The sample messages plus deliberately bad rows: no value of any record reaches the logs."""
    bad = dict(SAMPLE_RECORDS[0], email=None)  # no identity: invalid
    too_long = dict(SAMPLE_RECORDS[1], email="x" * 300)  # identity over 255 characters
    messages = SAMPLE_MESSAGES + lines(
        record_line(bad), record_line(too_long), '{"type": "RECORD", "broken'
    )
    run = run_write(tmp_path, sample_config("track", sandbox.url), messages)
    assert run.returncode == 0, run.stderr
    assert "invalid records skipped: 2" in run.logs[-2]
    output = run.stderr + "\n".join(run.logs)
    values = {
        value
        for record in SAMPLE_RECORDS
        for value in (record["email"], record["name"], record["user_id"], record["family_name"])
    }
    leaked = sorted(value for value in values if value in output)
    assert leaked == []


def test_state_values_containing_the_app_id_come_back_unchanged(sandbox, tmp_path):
    """app_id is not an airbyte_secret: the CDK would mask its digits in every output line,
    corrupting states, counts and timestamps that happen to contain them."""
    messages = lines(record_line(SAMPLE_RECORDS[0]), state_line("cursor-11-2011-11-11"))
    run = run_write(tmp_path, sample_config("track", sandbox.url), messages)
    assert run.returncode == 0
    assert [s["stream"]["stream_state"]["v"] for s in run.states] == ["cursor-11-2011-11-11"]
    assert "****" not in run.stdout
