"""A bad config, a bad config file and Ctrl-C, through the real CLI (`python main.py …`).

Each bad value carries a marker; the marker must appear nowhere in the output, which shows that
messages name the field and the rule without echoing the value.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from integration_tests.conftest import (
    CATALOG,
    ROOT,
    CliRun,
    cli_command,
    lines,
    record_line,
    run_cli,
    run_write,
    sample_config,
    state_line,
    write_json,
)

MARKER = "SECRET-7f3a"
TRACK_COLUMNS = {"api_type": "track", "property_columns": "*", "event_column": "event"}

SCHEMA_FAILURES = {
    "missing identity column": ({"api": TRACK_COLUMNS}, "api.identity_column"),
    "unknown api_type": (
        {"api": {**TRACK_COLUMNS, "api_type": MARKER, "identity_column": "email"}},
        "api.api_type",
    ),
    "batch_size 0": ({"batch_size": 0}, "batch_size"),
    "integer app_id": ({"app_id": 11}, "app_id"),
    "wrong type": ({"max_concurrent_requests": MARKER}, "max_concurrent_requests"),
    "out of range": ({"max_retry_seconds": 987_654_321}, "max_retry_seconds"),
    "non-object api": ({"api": [MARKER]}, "api"),
}
SAMPLE_TRACK = sample_config("track", "https://heapanalytics.com")["api"]
MAPPING_FAILURES = {
    # Issue 14.3: `b`'s leaf `c` would silently overwrite the renamed `x`.
    "two columns could give one name": (
        {"api": {**SAMPLE_TRACK, "property_columns": f"{MARKER} as b.c, b"}},
        "api.property_columns",
    ),
    # Issue 14.7: every item would carry a name Heap refuses.
    "column name beyond Heap's limit": (
        {"api": {**SAMPLE_TRACK, "property_columns": f"name, {MARKER}{'c' * 1100}"}},
        "api.property_columns",
    ),
}
"""Rules of the mapping beyond spec.json, through the same two commands."""
FAILURES = {**SCHEMA_FAILURES, **MAPPING_FAILURES}
ECHOES = (MARKER, "987654321", "'11'", '"11"', "{'")
"""What an echo of the bad values would look like (the CDK quoted `{'api_type': …}`)."""

EXPECTED_MESSAGES = {
    "missing identity column": (
        "Invalid configuration fields 'api.identity_column' and 'api.user_id_column': are both "
        "empty; set exactly one of them"
    ),
    "unknown api_type": (
        "Invalid configuration field 'api.api_type': must be one of track, add_user_properties, "
        "add_account_properties, identify, delete_users"
    ),
    "batch_size 0": (
        "Invalid configuration field 'batch_size': must be a whole number from 1 to 1000"
    ),
    "integer app_id": (
        "Invalid configuration field 'app_id': must be a string, not a number; "
        "write it in double quotes"
    ),
    "two columns could give one name": (
        "Invalid configuration field 'api.property_columns': entries 1 and 2 can give the same "
        "property name: entry 1's starts with entry 2's and a dot, where an object in entry 2 "
        "sends its fields, but entry 1 reads another part of the record; rename one with 'as'"
    ),
    "column name beyond Heap's limit": (
        "Invalid configuration field 'api.property_columns': a property name (the name after "
        "'as', or the column as written) must have 1 to 1023 characters; shorten a long "
        "column's with 'as'"
    ),
}


def bad_config(overrides: dict) -> dict:
    return {**sample_config("track", "https://heapanalytics.com"), **overrides}


def assert_ends_with_one_config_error(run: CliRun) -> str:
    """Exit code 1, one config_error TRACE, and no Python stack trace anywhere."""
    assert run.returncode == 1
    (trace,) = run.of_type("TRACE")
    error = trace["trace"]["error"]
    assert error["failure_type"] == "config_error"
    assert "Traceback" not in run.stdout + run.stderr
    assert not [m for m in run.of_type("LOG") if m["log"]["level"] == "FATAL"]
    return error["message"]


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_check_fails_naming_the_field_without_echoing_the_value(tmp_path, case):
    overrides, field = FAILURES[case]
    config = write_json(tmp_path, "config.json", bad_config(overrides))
    run = run_cli("check", "--config", str(config))
    assert run.returncode == 0
    status = run.connection_status
    assert status["status"] == "FAILED"
    assert f"'{field}'" in status["message"]
    assert "Config validation error" not in run.stdout
    assert not any(echo in run.stdout + run.stderr for echo in ECHOES)
    if case in EXPECTED_MESSAGES:
        assert status["message"] == EXPECTED_MESSAGES[case]


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_write_fails_with_a_config_error_trace_and_no_stack_trace(tmp_path, case):
    overrides, field = FAILURES[case]
    run = run_write(tmp_path, bad_config(overrides), "")
    message = assert_ends_with_one_config_error(run)
    assert f"'{field}'" in message
    assert not any(echo in run.stdout + run.stderr for echo in ECHOES)
    assert run.logs == [], "the config is rejected before writing begins"


NOT_A_CONFIG = {
    "truncated JSON": ('{"app_id": "' + MARKER + '", "api": {', "is not valid JSON"),
    "a JSON list": (f'["{MARKER}"]', "must hold a JSON object"),
}
"""More unreadable files (not UTF-8, missing) are covered in
unit_tests/airbyte/test_config_file.py."""


@pytest.mark.parametrize("case", sorted(NOT_A_CONFIG))
def test_a_file_that_is_not_a_json_object_fails_check_with_a_reason(tmp_path, case):
    contents, reason = NOT_A_CONFIG[case]
    path = write_text(tmp_path, contents)
    run = run_cli("check", "--config", str(path))
    assert run.returncode == 0
    status = run.connection_status
    assert status["status"] == "FAILED" and reason in status["message"]
    assert run.of_type("TRACE") == []
    assert MARKER not in run.stdout + run.stderr


def test_a_file_that_is_not_json_fails_write_with_a_config_error(tmp_path):
    contents, reason = NOT_A_CONFIG["truncated JSON"]
    path = write_text(tmp_path, contents)
    run = run_cli("write", "--config", str(path), "--catalog", str(CATALOG))
    assert reason in assert_ends_with_one_config_error(run)
    assert MARKER not in run.stdout + run.stderr


@pytest.mark.parametrize(
    "contents, reason",
    [
        (None, "does not exist"),
        ('{"streams": [' + f'"{MARKER}"', "is not valid JSON"),
        (f'{{"streams": [{{"stream": "{MARKER}"}}]}}', "is not a configured catalog"),
    ],
    ids=["missing", "not JSON", "not a catalog"],
)
def test_an_unusable_catalog_fails_write_with_a_config_error(tmp_path, contents, reason):
    config = write_json(
        tmp_path, "config.json", sample_config("track", "https://heapanalytics.com")
    )
    catalog = tmp_path / "catalog.json"
    if contents is not None:
        catalog.write_text(contents)
    run = run_cli("write", "--config", str(config), "--catalog", str(catalog))
    assert reason in assert_ends_with_one_config_error(run)
    assert MARKER not in run.stdout + run.stderr


def write_text(tmp_path, contents: str):
    path = tmp_path / "config.json"
    path.write_text(contents)
    return path


def test_sigint_during_a_write_ends_with_one_line_and_exit_130(sandbox, tmp_path):
    sandbox.set_faults(latency_ms=1000)
    config = sample_config("track", sandbox.url, batch_size=10, max_events_per_minute=0)
    config_path = write_json(tmp_path, "config.json", config)
    records = [
        record_line({"email": f"u{n}@x.io", "identities": {"connection": "c"}}) for n in range(50)
    ]
    process = subprocess.Popen(
        cli_command("write", "--config", str(config_path), "--catalog", str(CATALOG)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        process.stdin.write(lines(*records, state_line(1)))  # stdin stays open: still writing
        process.stdin.flush()
        first_output = process.stdout.readline()
        assert wait_until(lambda: sandbox.requests_log(), timeout=30), "no request reached Heap"
        process.send_signal(signal.SIGINT)
        rest, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    run = CliRun(process.returncode, first_output + rest, stderr)
    assert run.returncode == 130
    interruptions = [log for log in run.logs if log.startswith("Interrupted")]
    assert interruptions == ["Interrupted: stopped sending; states emitted so far remain valid."]
    assert "Traceback" not in run.stdout + run.stderr
    assert "KeyboardInterrupt" not in run.stdout + run.stderr
    assert run.states == [], "the state's records were still in flight when interrupted"


def wait_until(condition, timeout: float) -> bool:
    """Poll `condition` until it holds; the timeout only bounds a failing test."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
