"""A server that quotes refused items back: the real CLI never shows what it quotes.

The sandbox's `echo_refused` fault puts the whole refused item into its 400 answer (as JSON, as
escaped JSON inside a JSON string, as a Python repr, as a text/plain body, or cut short). The
refused rows carry a marker in their values and in their keys, non-ASCII included, and no
fragment of any of them may reach stdout (outside the STATE messages, which come back verbatim by
design) or stderr.
"""

from __future__ import annotations

import json

import pytest
import requests

from integration_tests.conftest import (
    lines,
    record_line,
    run_cli,
    run_write,
    sample_config,
    state_line,
    write_json,
)

MARKER = "Qz7Kx9Wv"
SECRET_IDENTITY = f"jane-{MARKER}@example.com"
SECRET_VALUE = f"café-{MARKER}"
SECRET_EMAIL_KEY = f"{MARKER}@example.com"
SECRET_KEY = f"clé-{MARKER}"
SECRET_QUOTED_VALUE = f'say "{MARKER}" — ünïcode'
SECRETS = [MARKER, SECRET_IDENTITY, SECRET_VALUE, SECRET_EMAIL_KEY, SECRET_KEY, SECRET_QUOTED_VALUE]
FRAGMENT = 6

GOOD_ROWS = 4


def forbidden_texts() -> set[str]:
    """Each secret in every form a server might quote it, and every 6-character fragment."""
    texts: set[str] = set()
    for secret in SECRETS:
        texts |= {
            secret,
            json.dumps(secret)[1:-1],
            json.dumps(secret, ensure_ascii=False)[1:-1],
            json.dumps(json.dumps(secret))[1:-1],
            repr(secret)[1:-1],
        }
        texts |= {secret[i : i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)}
    return texts


FORBIDDEN = forbidden_texts()


def leaks(run) -> list[str]:
    """Forbidden texts found in stderr or in any stdout line that is not a STATE message."""
    shown = "\n".join(line for line in run.stdout.split("\n") if not _is_state(line))
    return sorted(text for text in FORBIDDEN if text in shown or text in run.stderr)


def _is_state(line: str) -> bool:
    try:
        return json.loads(line).get("type") == "STATE"
    except ValueError:
        return False


def rows() -> list[str]:
    """Rows 3-5 are refused among good ones: the marker in the identity and a value, only in an
    email key of a nested map, and in a non-ASCII key with a quoted value."""

    def good(n: int) -> dict:
        return {"who": f"user-{n}@example.com", "event": "Signed Up", "plan": "pro"}

    refused = [
        {"who": SECRET_IDENTITY, "event": "Signed Up", "note": SECRET_VALUE},
        {"who": "user-x@example.com", "event": "Signed Up", "by_email": {SECRET_EMAIL_KEY: 3}},
        {"who": "user-y@example.com", "event": "Signed Up", SECRET_KEY: SECRET_QUOTED_VALUE},
    ]
    records = [good(1), good(2), *refused, *(good(n) for n in range(3, GOOD_ROWS + 1))]
    return [record_line(data) for data in records] + [state_line(MARKER)]


def config(base_url: str, api_type: str) -> dict:
    if api_type == "track":
        api = {
            "api_type": "track",
            "identity_column": "who",
            "event_column": "event",
            "property_columns": "*",
        }
    else:
        api = {"api_type": api_type, "account_id_column": "who", "property_columns": "*"}
    return {
        "app_id": "11",
        "base_url": base_url,
        "api": api,
        "batch_size": 10,
        "max_events_per_minute": 0,
    }


@pytest.mark.parametrize(
    "api_type, echo",
    [
        ("track", {"echo_refused": "json"}),
        ("track", {"echo_refused": "escaped"}),
        ("track", {"echo_refused": "repr"}),
        ("track", {"echo_refused": "text"}),
        ("track", {"echo_refused": "json", "echo_cut": 25}),  # {"identity": "jane-Qz7Kx9
        ("track", {"echo_refused": "escaped", "echo_cut": 29}),  # "{\"identity\": \"jane-Qz7Kx9
        ("add_account_properties", {"echo_refused": "json"}),  # text/plain on this endpoint
    ],
)
def test_items_echoed_by_heap_never_reach_the_output(sandbox, tmp_path, api_type, echo):
    sandbox.set_faults(reject_marker=MARKER, **echo)

    run = run_write(tmp_path, config(sandbox.url, api_type), lines(*rows()))

    assert run.returncode == 0, run.stderr
    assert len(sandbox.accepted(api_type)) == GOOD_ROWS
    assert sandbox.counters()["rejected_400"] >= 3, "the sandbox did refuse, with its echo"
    assert leaks(run) == []
    array = "events" if api_type == "track" else "accounts"
    explanation = f"(HTTP 400: {array} refused by the sandbox reject_marker rule"
    refused = [log for log in run.logs if log.startswith("Row ")]
    assert [log.split(" rejected")[0] for log in refused] == ["Row 3", "Row 4", "Row 5"]
    assert all(explanation in log for log in refused)
    (summary,) = [log for log in run.logs if log.startswith("Sync summary")]
    assert "rejected by Heap: 3 (" in summary
    assert [s["stream"]["stream_state"]["v"] for s in run.states] == [MARKER]


def test_the_sandboxs_echo_does_carry_the_secrets(sandbox):
    """So the test above can fail: Heap's text, shown as it came, would leak them."""
    sandbox.set_faults(reject_marker=MARKER, echo_refused="json")

    item = {"identity": SECRET_IDENTITY, "event": "e", "properties": {SECRET_KEY: 1}}
    answer = requests.post(f"{sandbox.url}/api/track", json={"app_id": "1", **item}, timeout=5)

    assert answer.status_code == 400
    assert SECRET_IDENTITY in answer.text and SECRET_KEY in answer.json()["message"]


def echoed_item_message() -> str:
    item = {"identity": SECRET_IDENTITY, "properties": {SECRET_KEY: SECRET_QUOTED_VALUE}}
    return f'identity "{SECRET_IDENTITY}" is invalid: {json.dumps(item)} {item!r}'


@pytest.mark.parametrize(
    "faults, expected",
    [
        ({"fixed_status": 400, "fixed_message": echoed_item_message()}, "identity is invalid"),
        ({"fixed_status": 401, "fixed_reason": f"No app for {MARKER}"}, "HTTP 401 (Unauthorized)"),
        ({"fixed_status": 404, "fixed_reason": SECRET_EMAIL_KEY}, "HTTP 404 (Not Found)"),
    ],
)
def test_check_never_shows_what_heap_echoes(sandbox, tmp_path, faults, expected):
    sandbox.set_faults(**faults)
    config_path = write_json(tmp_path, "c.json", sample_config("track", sandbox.url))

    run = run_cli("check", "--config", str(config_path))

    assert run.returncode == 0
    status = run.connection_status
    assert status["status"] == "FAILED"
    assert expected in status["message"]
    assert leaks(run) == []


def test_a_configuration_error_trace_never_shows_the_servers_reason_phrase(sandbox, tmp_path):
    sandbox.set_faults(fixed_status=403, fixed_reason=f"Forbidden for {SECRET_EMAIL_KEY}")

    run = run_write(tmp_path, config(sandbox.url, "track"), lines(*rows()))

    assert run.returncode == 1
    (trace,) = run.of_type("TRACE")
    assert "HTTP 403 (Forbidden)" in trace["trace"]["error"]["message"]
    assert leaks(run) == []
