"""Tests for the Heap sandbox over real HTTP.

The sandbox stands in for Heap in the connector's integration tests and benchmarks, so these
tests pin its contract from the outside: what it accepts, what it refuses (and that refusals
never echo user data unless the echo_refused fault asks for it), and how each injected fault
looks to an HTTP client.
"""

from __future__ import annotations

import base64
import email.utils
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from integration_tests.heap_sandbox import HeapSandbox

TRACK = "/api/track"
USERS = "/api/add_user_properties"
ACCOUNTS = "/api/add_account_properties"
SECRET = "s3cr3t-VALUE"  # planted in bad values; must never appear in a 400 message
TIMEOUT = 5


@pytest.fixture(scope="module")
def server() -> Iterator[HeapSandbox]:
    """One sandbox for the module: starting a server per test would dominate the run time."""
    with HeapSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(server: HeapSandbox) -> HeapSandbox:
    """The shared sandbox, reset so every test starts from an empty state with no faults."""
    server.reset()
    return server


def post(sandbox: HeapSandbox, path: str, body: Any, **kwargs: Any) -> requests.Response:
    """POST JSON on a fresh connection (a dropped connection must not poison a pool)."""
    return requests.post(sandbox.url + path, json=body, timeout=TIMEOUT, **kwargs)


def event(**fields: Any) -> dict[str, Any]:
    """A valid track item, overridable per test."""
    item = {"event": "Signed Up", "identity": "alice@example.com"}
    item.update(fields)
    return item


def user(**fields: Any) -> dict[str, Any]:
    """A valid add_user_properties item."""
    item = {"identity": "alice@example.com", "properties": {"plan": "pro"}}
    item.update(fields)
    return item


def account(**fields: Any) -> dict[str, Any]:
    """A valid add_account_properties item."""
    item = {"account_id": "acme", "properties": {"seats": 12}}
    item.update(fields)
    return item


ITEMS = {TRACK: event, USERS: user, ACCOUNTS: account}
ARRAY_KEY = {TRACK: "events", USERS: "users", ACCOUNTS: "accounts"}
API_TYPE = {TRACK: "track", USERS: "add_user_properties", ACCOUNTS: "add_account_properties"}


def error_message(response: requests.Response) -> str:
    """The 400 text in the endpoint's style: JSON message, or plain text for accounts."""
    if response.headers["Content-Type"].startswith("text/plain"):
        return response.text
    return response.json()["message"]


# ---- accepted forms ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [TRACK, USERS, ACCOUNTS])
def test_single_form_is_accepted_and_recorded(sandbox: HeapSandbox, path: str) -> None:
    item = ITEMS[path]()
    response = post(sandbox, path, {"app_id": "123", **item})

    assert response.status_code == 200
    [stored] = sandbox.accepted(API_TYPE[path])
    assert {k: v for k, v in stored.items() if not k.startswith("_")} == item
    assert stored["_app_id"] == "123"
    assert abs(stored["_received_at"] - time.time()) < 5
    [entry] = sandbox.requests_log()
    assert (entry["path"], entry["form"], entry["items"], entry["status"]) == (
        path,
        "single",
        1,
        200,
    )
    assert entry["body"] == {"app_id": "123", **item}


@pytest.mark.parametrize("path", [TRACK, USERS, ACCOUNTS])
def test_bulk_form_is_accepted_and_recorded(sandbox: HeapSandbox, path: str) -> None:
    items = [ITEMS[path]() for _ in range(1000)]
    response = post(sandbox, path, {"app_id": "123", ARRAY_KEY[path]: items})

    assert response.status_code == 200
    assert len(sandbox.accepted(API_TYPE[path])) == 1000
    assert sandbox.requests_log()[0]["form"] == "bulk"
    assert sandbox.counters()["items_accepted"] == 1000


def test_success_bodies_follow_heap(sandbox: HeapSandbox) -> None:
    tracked = post(sandbox, TRACK, {"app_id": "1", **event()})
    users = post(sandbox, USERS, {"app_id": "1", **user()})
    accounts = post(sandbox, ACCOUNTS, {"app_id": "1", **account()})

    assert tracked.headers["Content-Type"] == "application/json" and tracked.json() == {}
    assert users.headers["Content-Type"] == "application/json" and users.json() == {}
    assert accounts.headers["Content-Type"].startswith("text/plain") and accounts.text == "OK"


def test_track_accepts_full_item_and_documented_timestamps(sandbox: HeapSandbox) -> None:
    stamps = ["2017-03-10T22:21:56+00:00", "2022-10-21T04:09:54.622Z", "2022-10-26T03:06:59Z"]
    events = [
        event(
            timestamp=stamp,
            properties={"s": "x" * 1023, "i": 3, "f": 2.5, "b": True},
            idempotency_key=f"k{n}",
            session_id="sess",
        )
        for n, stamp in enumerate(stamps)
    ]
    events.append({"event": "e", "user_id": str(2**53 - 1)})

    assert post(sandbox, TRACK, {"app_id": 42, "events": events}).status_code == 200
    assert len(sandbox.accepted("track")) == 4
    assert sandbox.accepted("track")[0]["_app_id"] == 42


def test_accepted_without_type_concatenates_all(sandbox: HeapSandbox) -> None:
    for path in (TRACK, USERS, ACCOUNTS):
        post(sandbox, path, {"app_id": "1", **ITEMS[path]()})

    assert len(sandbox.accepted()) == 3
    with pytest.raises(ValueError):
        sandbox.accepted("nope")


# ---- validation -------------------------------------------------------------------------------

LONG = SECRET * 100
INVALID = [
    # (path, body, expected message)
    (TRACK, {"app_id": "1", "identity": SECRET}, "event: required"),
    (TRACK, {"app_id": "1", **event(event=LONG)}, "event: longer than 1024 characters"),
    (TRACK, {"app_id": "1", **event(event="")}, "event: must not be empty"),
    (TRACK, {"app_id": "1", **event(event=31337)}, "event: must be a string"),
    (TRACK, {"app_id": "1", "event": SECRET}, "identity: identity or user_id is required"),
    (TRACK, {"app_id": "1", **event(user_id="7")}, "identity: identity and user_id cannot"),
    (TRACK, {"app_id": "1", **event(identity=LONG)}, "identity: longer than 255 characters"),
    (TRACK, {"app_id": "1", **event(identity="")}, "identity: must not be empty"),
    (TRACK, {"app_id": "1", **event(identity=31337)}, "identity: must be a string"),
    (TRACK, {"app_id": "1", "event": "e", "user_id": SECRET}, "user_id: must be the string form"),
    (TRACK, {"app_id": "1", "event": "e", "user_id": str(2**53)}, "user_id: must be the string"),
    (TRACK, {"app_id": "1", "event": "e", "user_id": "-31337"}, "user_id: must be the string"),
    (TRACK, {"app_id": "1", "event": "e", "user_id": 31337}, "user_id: must be a string"),
    (TRACK, {"app_id": "1", **event(timestamp=SECRET)}, "timestamp: must be ISO 8601"),
    (TRACK, {"app_id": "1", **event(timestamp="2017-03-10 22:21:56")}, "timestamp: must be ISO"),
    (TRACK, {"app_id": "1", **event(timestamp="2017-13-40T22:21:56Z")}, "timestamp: must be ISO"),
    (TRACK, {"app_id": "1", **event(timestamp=1489184516)}, "timestamp: must be a string"),
    (TRACK, {"app_id": "1", **event(properties=[SECRET])}, "properties: must be an object"),
    (TRACK, {"app_id": "1", **event(properties={"p": None})}, "properties.p: null is not"),
    (TRACK, {"app_id": "1", **event(properties={"p": {"x": SECRET}})}, "properties.p: objects"),
    (TRACK, {"app_id": "1", **event(properties={"p": [SECRET]})}, "properties.p: arrays"),
    (TRACK, {"app_id": "1", **event(properties={"p": LONG})}, "properties.p: longer than 1023"),
    (TRACK, {"app_id": "1", **event(properties={LONG: 1})}, "properties: property name longer"),
    (TRACK, {"app_id": "1", **event(properties={"": SECRET})}, "properties: empty property name"),
    (TRACK, {"app_id": "1", **event(idempotency_key="")}, "idempotency_key: must not be empty"),
    (TRACK, {"app_id": "1", **event(session_id=31337)}, "session_id: must be a string"),
    (TRACK, {"app_id": "1", **event(colour=SECRET)}, "colour: unknown field"),
    (TRACK, event(), "app_id: required"),
    (TRACK, {"app_id": "", **event()}, "app_id: must be a non-empty string or an integer"),
    (TRACK, {"app_id": [SECRET], **event()}, "app_id: must be a non-empty string or an integer"),
    (TRACK, {"app_id": True, **event()}, "app_id: must be a non-empty string or an integer"),
    (TRACK, {"app_id": "1", "events": [event(app_id=SECRET)]}, "events[0].app_id: not allowed"),
    (TRACK, {"app_id": "1", "events": [event()], "x": SECRET}, "x: unexpected top-level key"),
    (TRACK, {"app_id": "1", "events": []}, "events: must contain at least 1 item"),
    (TRACK, {"app_id": "1", "events": {"e": SECRET}}, "events: must be an array"),
    (TRACK, {"app_id": "1", "events": [SECRET]}, "events[0]: must be an object"),
    (TRACK, {"app_id": "1", "users": [user()]}, "users: wrong array key for /api/track"),
    (TRACK, [event()], "body: must be a JSON object"),
    (USERS, {"app_id": "1", "properties": {"a": SECRET}}, "identity: required"),
    (USERS, {"app_id": "1", "identity": SECRET}, "properties: required"),
    (USERS, {"app_id": "1", **user(identity=LONG)}, "identity: longer than 255 characters"),
    (USERS, {"app_id": "1", **user(properties={"id": SECRET})}, "properties.id: reserved"),
    (USERS, {"app_id": "1", **user(properties={"ID": SECRET})}, "properties.ID: reserved"),
    (USERS, {"app_id": "1", **user(properties={"Id": SECRET})}, "properties.Id: reserved"),
    (USERS, {"app_id": "1", **user(properties={"iD": SECRET})}, "properties.iD: reserved"),
    (USERS, {"app_id": "1", "users": [user(event=SECRET)]}, "users[0].event: unknown field"),
    (USERS, {"app_id": "1", "events": [event()]}, "events: wrong array key"),
    (ACCOUNTS, {"app_id": "1", "properties": {"a": SECRET}}, "account_id: required"),
    (ACCOUNTS, {"app_id": "1", **account(account_id="")}, "account_id: must not be empty"),
    (ACCOUNTS, {"app_id": "1", "account_id": SECRET}, "properties: required"),
    (ACCOUNTS, {"app_id": "1", **account(properties={"p": LONG})}, "properties.p: longer than"),
    (ACCOUNTS, {"app_id": "1", "users": [user()]}, "users: wrong array key"),
]


@pytest.mark.parametrize(("path", "body", "expected"), INVALID)
def test_invalid_body_is_rejected_without_echoing_the_value(
    sandbox: HeapSandbox, path: str, body: Any, expected: str
) -> None:
    response = post(sandbox, path, body)

    assert response.status_code == 400
    message = error_message(response)
    assert expected in message
    assert SECRET not in message and "31337" not in message and "2017" not in message
    assert sandbox.accepted() == []
    assert sandbox.counters()["rejected_400"] == 1


def test_one_bad_item_rejects_the_whole_bulk(sandbox: HeapSandbox) -> None:
    events = [event() for _ in range(10)]
    events[3]["identity"] = LONG

    response = post(sandbox, TRACK, {"app_id": "1", "events": events})

    assert response.status_code == 400
    assert response.json() == {"message": "events[3].identity: longer than 255 characters"}
    assert sandbox.accepted() == []


def test_bulk_reserved_id_names_the_location(sandbox: HeapSandbox) -> None:
    response = post(sandbox, USERS, {"app_id": "1", "users": [user(properties={"id": SECRET})]})

    assert response.json() == {"message": "users[0].properties.id: reserved property name"}


@pytest.mark.parametrize("path", [TRACK, USERS, ACCOUNTS])
def test_more_than_1000_items_is_rejected(sandbox: HeapSandbox, path: str) -> None:
    body = {"app_id": "1", ARRAY_KEY[path]: [ITEMS[path]() for _ in range(1001)]}

    response = post(sandbox, path, body)

    assert response.status_code == 400
    assert f"{ARRAY_KEY[path]}: more than 1000 items" in error_message(response)


def test_account_errors_are_plain_text(sandbox: HeapSandbox) -> None:
    response = post(sandbox, ACCOUNTS, {"app_id": "1"})

    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == "account_id: required"


def test_content_type_and_json_are_required(sandbox: HeapSandbox) -> None:
    url = sandbox.url + TRACK
    as_text = requests.post(url, data=b'{"app_id":"1"}', headers={"Content-Type": "text/plain"})
    broken = requests.post(url, data=b"{", headers={"Content-Type": "application/json"})

    assert as_text.status_code == 400
    assert as_text.json() == {"message": "Content-Type: must be application/json"}
    assert broken.status_code == 400
    assert broken.json() == {"message": "body: invalid JSON"}


def test_unknown_path_is_404_and_wrong_method_is_405(sandbox: HeapSandbox) -> None:
    assert requests.post(sandbox.url + "/api/identify", json={}).status_code == 404
    assert requests.post(sandbox.url + "/api/track/", json={}).status_code == 404
    response = requests.get(sandbox.url + TRACK)

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


# ---- idempotency ------------------------------------------------------------------------------


def test_repeated_idempotency_key_is_stored_once(sandbox: HeapSandbox) -> None:
    first = post(sandbox, TRACK, {"app_id": "1", **event(idempotency_key="k1")})
    batch = [event(idempotency_key="k1"), event(idempotency_key="k2"), event()]
    again = post(sandbox, TRACK, {"app_id": "1", "events": batch})
    other_app = post(sandbox, TRACK, {"app_id": "2", **event(idempotency_key="k1")})

    assert first.status_code == again.status_code == other_app.status_code == 200
    keys = [(item["_app_id"], item.get("idempotency_key")) for item in sandbox.accepted("track")]
    assert keys == [("1", "k1"), ("1", "k2"), ("1", None), ("2", "k1")]
    assert sandbox.counters()["duplicates_ignored"] == 1
    assert sandbox.counters()["items_accepted"] == 4


# ---- faults -----------------------------------------------------------------------------------


def test_error_500_rate_answers_500_without_storing(sandbox: HeapSandbox) -> None:
    sandbox.set_faults(error_500_rate=1.0)

    responses = [post(sandbox, path, {"app_id": "1", **ITEMS[path]()}) for path in ITEMS]

    assert [r.status_code for r in responses] == [500, 500, 500]
    assert responses[2].headers["Content-Type"].startswith("text/plain")
    assert sandbox.accepted() == []
    assert sandbox.counters()["injected_500"] == 3
    assert sandbox.counters()["status_500"] == 3


def test_error_429_with_numeric_retry_after(sandbox: HeapSandbox) -> None:
    sandbox.set_faults(error_429_rate=1.0, retry_after=7)

    response = post(sandbox, TRACK, {"app_id": "1", **event()})

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert sandbox.accepted() == []
    assert sandbox.counters()["injected_429"] == 1


def test_error_429_retry_after_from_a_list(sandbox: HeapSandbox) -> None:
    sandbox.set_faults(error_429_rate=1.0, retry_after=[1, 2], seed=7)

    values = {
        post(sandbox, TRACK, {"app_id": "1", **event()}).headers["Retry-After"] for _ in "x" * 12
    }

    assert values <= {"1", "2"} and values


def test_error_429_with_http_date_retry_after(sandbox: HeapSandbox) -> None:
    sandbox.set_faults(error_429_rate=1.0, retry_after="http-date")

    response = post(sandbox, TRACK, {"app_id": "1", **event()})

    assert response.status_code == 429
    retry_at = email.utils.parsedate_to_datetime(response.headers["Retry-After"]).timestamp()
    assert 0 < retry_at - time.time() <= 2.5


def test_error_429_without_retry_after(sandbox: HeapSandbox) -> None:
    sandbox.set_faults(error_429_rate=1.0)

    response = post(sandbox, TRACK, {"app_id": "1", **event()})

    assert response.status_code == 429
    assert "Retry-After" not in response.headers


def test_drop_closes_connection_without_storing(sandbox: HeapSandbox) -> None:
    sandbox.set_faults(drop_rate=1.0)

    with pytest.raises(requests.exceptions.ConnectionError):
        post(sandbox, TRACK, {"app_id": "1", **event()})

    assert sandbox.accepted() == []
    assert sandbox.counters()["dropped"] == 1
    assert sandbox.requests_log()[0]["status"] is None


def test_drop_after_store_stores_then_drops(sandbox: HeapSandbox) -> None:
    sandbox.set_faults(drop_rate=1.0, drop_after_store=True)

    with pytest.raises(requests.exceptions.ConnectionError):
        post(sandbox, TRACK, {"app_id": "1", **event(idempotency_key="k")})
    with pytest.raises(requests.exceptions.ConnectionError):
        post(sandbox, TRACK, {"app_id": "1", **event(idempotency_key="k")})

    assert len(sandbox.accepted("track")) == 1  # the retry was deduplicated
    assert sandbox.counters()["dropped"] == 2


def test_fault_rates_are_reproducible_with_a_seed(sandbox: HeapSandbox) -> None:
    def statuses() -> list[int]:
        return [post(sandbox, TRACK, {"app_id": "1", **event()}).status_code for _ in "x" * 20]

    sandbox.set_faults(error_500_rate=0.5, seed=3)
    first = statuses()
    sandbox.set_faults(seed=3)

    assert statuses() == first
    assert {200, 500} == set(first)


def test_fixed_status_answers_every_api_request(sandbox: HeapSandbox) -> None:
    sandbox.set_faults(fixed_status=404, fixed_message="no such app")

    tracked = post(sandbox, TRACK, {"app_id": "1", **event()})
    accounts = post(sandbox, ACCOUNTS, {"app_id": "1", **account()})

    assert tracked.status_code == accounts.status_code == 404
    assert tracked.json() == {"message": "no such app"}
    assert accounts.text == "no such app"
    assert sandbox.accepted() == []


def test_fixed_status_default_message(sandbox: HeapSandbox) -> None:
    sandbox.set_faults(fixed_status=401)

    response = post(sandbox, USERS, {"app_id": "1", **user()})

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}


def test_latency_is_applied(sandbox: HeapSandbox) -> None:
    sandbox.set_faults(latency_ms=200)

    started = time.monotonic()
    response = post(sandbox, TRACK, {"app_id": "1", **event()})
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed >= 0.2  # a lower bound only: a slow machine can make it longer, never shorter


def test_rate_limit_answers_429_after_n_events(sandbox: HeapSandbox) -> None:
    sandbox.set_faults(rate_limit={"events": 5, "window_seconds": 30})
    batch = {"app_id": "1", "events": [event() for _ in range(3)]}
    single = {"app_id": "1", **event()}

    statuses = [post(sandbox, TRACK, batch).status_code for _ in range(2)]
    singles = [post(sandbox, TRACK, single).status_code for _ in range(2)]
    limited = post(sandbox, TRACK, single)
    other_app = post(sandbox, TRACK, {"app_id": "2", **event()})

    assert statuses == [200, 429]  # 3 fit; 3 more would make 6 > 5, so none is stored
    assert singles == [200, 200]  # exactly 5 in the window
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 30
    assert other_app.status_code == 200  # the window is per app_id
    assert sandbox.counters()["rate_limited_429"] == 2
    assert len(sandbox.accepted("track")) == 6


def test_rate_limit_window_rolls(sandbox: HeapSandbox) -> None:
    sandbox.set_faults(rate_limit={"events": 2, "window_seconds": 0.3})
    body = {"app_id": "1", "events": [event(), event()]}

    assert post(sandbox, TRACK, body).status_code == 200
    limited = post(sandbox, TRACK, body)
    time.sleep(0.35)

    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert post(sandbox, TRACK, body).status_code == 200
    stamps = sorted({item["_received_at"] for item in sandbox.accepted("track")})
    assert stamps[1] - stamps[0] >= 0.3  # achieved rate stays within the limit


def test_rate_limit_per_identity(sandbox: HeapSandbox) -> None:
    sandbox.set_faults(rate_limit={"events": 100, "window_seconds": 30, "per_identity": 2})

    alice = [post(sandbox, TRACK, {"app_id": "1", **event(identity="a")}) for _ in range(3)]
    bob = post(sandbox, TRACK, {"app_id": "1", **event(identity="b")})

    assert [r.status_code for r in alice] == [200, 200, 429]
    assert int(alice[2].headers["Retry-After"]) >= 1
    assert bob.status_code == 200


def test_invalid_fault_settings_raise(sandbox: HeapSandbox) -> None:
    with pytest.raises(ValueError):
        sandbox.set_faults(error_500_rate=2)
    with pytest.raises(ValueError):
        sandbox.set_faults(no_such_fault=1)
    with pytest.raises(ValueError):
        sandbox.set_faults(rate_limit={"events": 0, "window_seconds": 1})


# ---- control plane, keep-alive, bodies -------------------------------------------------------


def test_control_endpoints(sandbox: HeapSandbox) -> None:
    base = sandbox.url
    post(sandbox, TRACK, {"app_id": "1", **event()})
    faults = requests.post(base + "/_sandbox/faults", json={"error_500_rate": 1.0}, timeout=TIMEOUT)
    failed = post(sandbox, TRACK, {"app_id": "1", **event()})

    state = requests.get(base + "/_sandbox/state", timeout=TIMEOUT).json()
    counters = requests.get(base + "/_sandbox/counters", timeout=TIMEOUT).json()

    assert faults.status_code == 200 and faults.json()["error_500_rate"] == 1.0
    assert failed.status_code == 500
    assert set(state) == {"counters", "accepted", "requests"}
    assert set(state["accepted"]) == {"track", "add_user_properties", "add_account_properties"}
    assert len(state["accepted"]["track"]) == 1 and len(state["requests"]) == 2
    assert counters == state["counters"] and counters["injected_500"] == 1

    reset = requests.post(base + "/_sandbox/reset", timeout=TIMEOUT)
    assert reset.status_code == 200
    assert requests.get(base + "/_sandbox/counters", timeout=TIMEOUT).json()["requests"] == 0
    assert post(sandbox, TRACK, {"app_id": "1", **event()}).status_code == 200


def test_control_endpoints_ignore_faults_and_validate(sandbox: HeapSandbox) -> None:
    # Latency far beyond the client's timeout: a control request that waited for it would time out.
    sandbox.set_faults(fixed_status=503, latency_ms=TIMEOUT * 10_000)
    base = sandbox.url

    assert requests.get(base + "/_sandbox/counters", timeout=TIMEOUT).status_code == 200
    bad = requests.post(base + "/_sandbox/faults", json={"bogus": 1}, timeout=TIMEOUT)
    assert bad.status_code == 400
    assert requests.get(base + "/_sandbox/reset", timeout=TIMEOUT).status_code == 405
    assert requests.get(base + "/_sandbox/nothing", timeout=TIMEOUT).status_code == 404


def test_keep_alive_serves_many_requests_on_one_connection(sandbox: HeapSandbox) -> None:
    with requests.Session() as session:
        for _ in range(20):
            response = session.post(sandbox.url + TRACK, json={"app_id": "1", **event()})
            assert response.status_code == 200
            assert response.headers["Content-Length"] == "2"

    assert len(sandbox.accepted("track")) == 20


def test_binds_loopback_only(sandbox: HeapSandbox) -> None:
    assert sandbox.url.startswith("http://127.0.0.1:")


def test_no_bodies_mode_omits_bodies() -> None:
    with HeapSandbox(record_bodies=False) as quiet:
        post(quiet, TRACK, {"app_id": "1", "events": [event()]})

        [entry] = quiet.requests_log()
        assert "body" not in entry and entry["items"] == 1
        assert len(quiet.accepted("track")) == 1


def test_reset_restores_constructor_faults() -> None:
    with HeapSandbox(error_500_rate=1.0) as faulty:
        faulty.set_faults(error_500_rate=0.0)
        faulty.reset()

        assert post(faulty, TRACK, {"app_id": "1", **event()}).status_code == 500


# ---- CLI --------------------------------------------------------------------------------------


def test_cli_serves_and_exits_cleanly_on_sigterm() -> None:
    project = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "integration_tests.heap_sandbox", "--port", "0"]
    command += ["--rate-limit-events", "1", "--rate-limit-window-seconds", "30", "--no-bodies"]
    with subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, text=True) as process:
        try:
            line = process.stdout.readline().strip()
            assert line.startswith("listening on http://127.0.0.1:")
            url = line.removeprefix("listening on ")

            first = requests.post(url + TRACK, json={"app_id": "1", **event()}, timeout=TIMEOUT)
            second = requests.post(url + TRACK, json={"app_id": "1", **event()}, timeout=TIMEOUT)
            state = requests.get(url + "/_sandbox/state", timeout=TIMEOUT).json()

            assert (first.status_code, second.status_code) == (200, 429)
            assert len(state["accepted"]["track"]) == 1
            assert "body" not in state["requests"][0]
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=5) == 0
            assert process.stdout.read() == ""
        finally:
            if process.poll() is None:
                process.kill()


def test_reject_marker_refuses_the_marked_item_without_quoting_it():
    with HeapSandbox(reject_marker="BAD-ROW") as server:
        good = {"identity": "u1", "properties": {"k": "v"}}
        bad = {"identity": "u2", "properties": {"k": "xx BAD-ROW xx"}}
        response = requests.post(
            f"{server.url}/api/add_user_properties",
            json={"app_id": "1", "users": [good, bad]},
            timeout=5,
        )
        assert response.status_code == 400
        assert response.json()["message"].startswith("users[1]:")
        assert "BAD-ROW" not in response.text
        ok = requests.post(
            f"{server.url}/api/add_user_properties", json={"app_id": "1", **good}, timeout=5
        )
        assert ok.status_code == 200
        assert len(server.accepted("add_user_properties")) == 1


ECHOED = {"identity": "u2", "event": "e", "properties": {"café-ECHO@x.io": 'say "café" ECHO'}}
"""A track item marked ECHO, with a non-ASCII key and a value holding quotes."""


def post_marked(server: HeapSandbox, path: str = TRACK) -> requests.Response:
    """A bulk body whose second item carries the reject marker ECHO."""
    bad = ECHOED if path == TRACK else account(properties=ECHOED["properties"])
    return post(server, path, {"app_id": "1", ARRAY_KEY[path]: [ITEMS[path](), bad]})


@pytest.mark.parametrize(
    "form, quoted",
    [
        (
            "json",
            r'{"identity": "u2", "event": "e", "properties": '
            r'{"café-ECHO@x.io": "say \"café\" ECHO"}}',
        ),
        (
            "escaped",
            r"{\"identity\": \"u2\", \"event\": \"e\", \"properties\": "
            r"{\"caf\\u00e9-ECHO@x.io\": \"say \\\"caf\\u00e9\\\" ECHO\"}}",
        ),
        (
            "repr",
            r"{'identity': 'u2', 'event': 'e', 'properties': "
            r"""{'café-ECHO@x.io': 'say "café" ECHO'}}""",
        ),
    ],
)
def test_echo_refused_quotes_the_refused_item_in_the_chosen_form(sandbox, form, quoted):
    sandbox.set_faults(reject_marker="ECHO", echo_refused=form)

    response = post_marked(sandbox)

    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    message = response.json()["message"]
    assert message.startswith("events[1]: refused by the sandbox's reject_marker rule: ")
    assert message.split("rule: ", 1)[1].strip('"') == quoted


def test_echo_refused_escaped_form_decodes_back_to_the_item(sandbox):
    sandbox.set_faults(reject_marker="ECHO", echo_refused="escaped")

    message = post_marked(sandbox).json()["message"]

    assert "café" not in message
    assert json.loads(json.loads(message.split("rule: ", 1)[1])) == ECHOED


@pytest.mark.parametrize("path", [TRACK, ACCOUNTS])
def test_echo_refused_text_form_answers_plain_text_on_any_endpoint(sandbox, path):
    sandbox.set_faults(reject_marker="ECHO", echo_refused="text")

    response = post_marked(sandbox, path)

    assert response.status_code == 400
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    location, echo = response.text.split(": refused by the sandbox's reject_marker rule: ")
    assert location == f"{ARRAY_KEY[path]}[1]"
    assert json.loads(echo)["properties"] == ECHOED["properties"]


def test_echo_cut_keeps_the_first_characters_of_the_echo(sandbox):
    sandbox.set_faults(reject_marker="ECHO", echo_refused="json", echo_cut=17)

    message = post_marked(sandbox).json()["message"]

    prefix = "events[1]: refused by the sandbox's reject_marker rule: "
    assert message == prefix + '{"identity": "u2"'


def test_without_echo_refused_the_refusal_quotes_nothing(sandbox):
    sandbox.set_faults(reject_marker="ECHO", echo_cut=10)

    response = post_marked(sandbox)

    assert response.json() == {"message": "events[1]: refused by the sandbox's reject_marker rule"}
    assert sandbox.accepted() == []


def test_fixed_reason_replaces_the_status_lines_phrase(sandbox):
    sandbox.set_faults(fixed_status=401, fixed_reason="jane@example.com is unknown")

    response = post(sandbox, TRACK, {"app_id": "1", **event()})

    assert (response.status_code, response.reason) == (401, "jane@example.com is unknown")


@pytest.mark.parametrize(
    "changes",
    [
        {"echo_refused": "xml"},
        {"echo_cut": -1},
        {"echo_cut": "10"},
        {"fixed_reason": "two\r\nlines"},
        {"fixed_reason": "café ✓"},
    ],
)
def test_invalid_echo_and_reason_settings_raise(sandbox, changes):
    with pytest.raises(ValueError):
        sandbox.set_faults(**changes)


def test_count_only_counts_without_keeping_items():
    with HeapSandbox(store_items=False) as server:
        body = {"app_id": "1", "events": [{"identity": "u", "event": "e"}] * 3}
        assert requests.post(f"{server.url}/api/track", json=body, timeout=5).status_code == 200
        assert server.counters()["items_accepted"] == 3
        assert server.accepted("track") == []


# ---- user_id on track -------------------------------------------------------------------------

IDENTIFY = "/api/v1/identify"
AUTH = "/api/public/v0/auth_token"
DELETION = "/api/public/v0/user_deletion"
STATUS = "/api/public/v0/deletion_status/"
APP, KEY = "1", "k3y-" + SECRET
MAX_USER_ID = 2**53 - 1
MONTH = 30 * 24 * 3600


def control(sandbox: HeapSandbox, path: str, body: Any = None) -> requests.Response:
    """A control request: POST with a JSON body, GET without one."""
    url = f"{sandbox.url}/_sandbox/{path}"
    if body is None:
        return requests.get(url, timeout=TIMEOUT)
    return requests.post(url, json=body, timeout=TIMEOUT)


def is_heap_user_id_string(value: Any) -> bool:
    """The documented user_id of track and identify: the decimal string of 0..2**53-1."""
    return (
        type(value) is str
        and re.fullmatch(r"0|[1-9][0-9]*", value) is not None
        and int(value) <= MAX_USER_ID
    )


USER_ID_VALUES = st.one_of(
    st.integers(-5, MAX_USER_ID + 5).map(str),
    st.integers(-(2**60), 2**60).map(str),
    st.integers(-(2**60), 2**60),
    st.from_regex(r"[+-]?0*[0-9]{1,17}", fullmatch=True),
    st.text(alphabet="0123456789+-. eE\u0663", max_size=18),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)


def test_track_user_id_is_accepted_in_both_forms_and_read_back(sandbox: HeapSandbox) -> None:
    single = post(sandbox, TRACK, {"app_id": "1", "event": "e", "user_id": "7"})
    bulk = [{"event": "b", "user_id": "7"}, event(), {"event": "c", "user_id": "0"}]
    batch = post(sandbox, TRACK, {"app_id": "1", "events": bulk})

    assert single.status_code == batch.status_code == 200
    assert [item["event"] for item in sandbox.events(user_id="7")] == ["e", "b"]
    assert [item["event"] for item in sandbox.events(user_id="0")] == ["c"]
    assert [item["event"] for item in sandbox.events(identity="alice@example.com")] == ["Signed Up"]
    over_http = control(sandbox, "events?user_id=7").json()["events"]
    assert [item["event"] for item in over_http] == ["e", "b"]
    by_identity = control(sandbox, "events?identity=alice%40example.com").json()["events"]
    assert [item["event"] for item in by_identity] == ["Signed Up"]


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([event(), event(user_id="7")], "events[1].identity: identity and user_id cannot both"),
        ([{"event": SECRET}], "events[0].identity: identity or user_id is required"),
        ([{"event": "e", "user_id": "007"}], "events[0].user_id: must be the string form"),
        ([{"event": "e", "user_id": 7}], "events[0].user_id: must be a string"),
    ],
)
def test_track_bulk_item_needs_exactly_one_valid_user_reference(
    sandbox: HeapSandbox, items: list[dict], expected: str
) -> None:
    response = post(sandbox, TRACK, {"app_id": "1", "events": items})

    assert response.status_code == 400
    assert expected in response.json()["message"]
    assert sandbox.accepted() == []


@settings(max_examples=150, deadline=None)
@given(value=USER_ID_VALUES, bulk=st.booleans())
def test_track_user_id_rule_holds_for_generated_values(
    server: HeapSandbox, value: Any, bulk: bool
) -> None:
    server.reset()
    item = {"event": "e", "user_id": value}
    body = {"app_id": "1", "events": [item]} if bulk else {"app_id": "1", **item}

    response = post(server, TRACK, body)

    assert response.status_code == (200 if is_heap_user_id_string(value) else 400)
    assert len(server.accepted("track")) == (1 if response.status_code == 200 else 0)


@pytest.mark.parametrize("query", ["", "user_id=1&identity=a", "colour=red", "user_id=1&user_id=2"])
def test_events_control_needs_exactly_one_user(sandbox: HeapSandbox, query: str) -> None:
    assert control(sandbox, f"events?{query}").status_code == 400
    with pytest.raises(ValueError):
        sandbox.events()


# ---- identify ---------------------------------------------------------------------------------


def identify(sandbox: HeapSandbox, identity: str, user_id: str, **fields: Any) -> None:
    """POST one identify pair and check Heap's answer: 200 {} whatever the outcome."""
    body = {"app_id": APP, "identity": identity, "user_id": user_id, **fields}
    response = post(sandbox, IDENTIFY, body)
    assert (response.status_code, response.json()) == (200, {})


def outcomes(sandbox: HeapSandbox) -> list[str]:
    return [call["outcome"] for call in sandbox.identify_calls()]


def test_identify_is_accepted_recorded_and_applied(sandbox: HeapSandbox) -> None:
    identify(sandbox, "alice", "5", timestamp="2017-03-10T22:21:56+00:00")
    response = post(sandbox, IDENTIFY, {"app_id": 42, "identity": "bob", "user_id": "6"})

    assert response.status_code == 200
    [first, second] = sandbox.identify_calls()
    assert {key: first[key] for key in ("app_id", "identity", "user_id", "timestamp")} == {
        "app_id": APP,
        "identity": "alice",
        "user_id": "5",
        "timestamp": "2017-03-10T22:21:56+00:00",
    }
    assert first["outcome"] == "applied" and abs(first["received_at"] - time.time()) < 5
    assert second["app_id"] == 42 and "timestamp" not in second
    assert sandbox.identities() == {"1": {"5": "alice"}, "42": {"6": "bob"}}
    assert control(sandbox, "identify").json() == {
        "calls": sandbox.identify_calls(),
        "applied": sandbox.identities(),
    }
    [entry, _] = sandbox.requests_log()
    assert (entry["path"], entry["form"], entry["items"], entry["status"]) == (
        IDENTIFY,
        "single",
        1,
        200,
    )
    assert sandbox.counters()["identify_applied"] == 2
    assert sandbox.accepted() == []  # identify pairs are not ingestion items


INVALID_IDENTIFY = [
    ({"app_id": "1", "user_id": "5"}, "identity: required"),
    ({"app_id": "1", "identity": SECRET}, "user_id: required"),
    ({"app_id": "1", "identity": "", "user_id": "5"}, "identity: must not be empty"),
    ({"app_id": "1", "identity": LONG, "user_id": "5"}, "identity: longer than 255 characters"),
    ({"app_id": "1", "identity": 31337, "user_id": "5"}, "identity: must be a string"),
    ({"app_id": "1", "identity": "a", "user_id": 31337}, "user_id: must be a string"),
    ({"app_id": "1", "identity": "a", "user_id": str(2**53)}, "user_id: must be the string form"),
    ({"app_id": "1", "identity": "a", "user_id": "-31337"}, "user_id: must be the string form"),
    ({"app_id": "1", "identity": "a", "user_id": "031337"}, "user_id: must be the string form"),
    ({"app_id": "1", "identity": "a", "user_id": "5", "timestamp": SECRET}, "timestamp: must be"),
    ({"app_id": "1", "identity": "a", "user_id": "5", "event": SECRET}, "event: unknown field"),
    ({"identity": "a", "user_id": "5"}, "app_id: required"),
    ({"app_id": "", "identity": "a", "user_id": "5"}, "app_id: must be a non-empty string"),
    ({"app_id": "1", "users": [{"identity": SECRET, "user_id": "5"}]}, "users: identify has no"),
    ([{"app_id": "1", "identity": SECRET, "user_id": "5"}], "body: must be a JSON object"),
]


@pytest.mark.parametrize(("body", "expected"), INVALID_IDENTIFY)
def test_invalid_identify_is_rejected_without_echoing_the_value(
    sandbox: HeapSandbox, body: Any, expected: str
) -> None:
    response = post(sandbox, IDENTIFY, body)

    assert response.status_code == 400
    message = response.json()["message"]
    assert expected in message
    assert SECRET not in message and "31337" not in message
    assert sandbox.identify_calls() == [] and sandbox.identities() == {}


def test_identify_needs_json_and_post(sandbox: HeapSandbox) -> None:
    url = sandbox.url + IDENTIFY
    as_text = requests.post(url, data=b"{}", headers={"Content-Type": "text/plain"})
    broken = requests.post(url, data=b"{", headers={"Content-Type": "application/json"})
    got = requests.get(url, timeout=TIMEOUT)

    assert as_text.json() == {"message": "Content-Type: must be application/json"}
    assert broken.json() == {"message": "body: invalid JSON"}
    assert (got.status_code, got.headers["Allow"]) == (405, "POST")


@settings(max_examples=100, deadline=None)
@given(value=USER_ID_VALUES)
def test_identify_user_id_rule_holds_for_generated_values(server: HeapSandbox, value: Any) -> None:
    server.reset()

    response = post(server, IDENTIFY, {"app_id": APP, "identity": "a", "user_id": value})

    assert response.status_code == (200 if is_heap_user_id_string(value) else 400)
    assert len(server.identify_calls()) == (1 if response.status_code == 200 else 0)


def test_a_second_identity_for_a_user_id_is_silently_ignored(sandbox: HeapSandbox) -> None:
    identify(sandbox, "alice", "5")
    identify(sandbox, "bob", "5")
    identify(sandbox, "alice", "5")
    post(sandbox, IDENTIFY, {"app_id": "2", "identity": "bob", "user_id": "5"})

    assert outcomes(sandbox) == ["applied", "ignored_identity_taken", "repeated", "applied"]
    assert sandbox.identities() == {"1": {"5": "alice"}, "2": {"5": "bob"}}
    counters = sandbox.counters()
    assert (counters["identify_ignored_identity_taken"], counters["identify_repeated"]) == (1, 1)


def test_an_11th_user_id_for_an_identity_within_a_month_is_silently_ignored(
    sandbox: HeapSandbox,
) -> None:
    for user_id in range(10):
        identify(sandbox, "alice", str(user_id))
    identify(sandbox, "alice", "10")
    identify(sandbox, "bob", "10")  # the ignored pair left user_id 10 free
    post(sandbox, IDENTIFY, {"app_id": "2", "identity": "alice", "user_id": "11"})

    assert outcomes(sandbox) == ["applied"] * 10 + ["ignored_user_id_limit", "applied", "applied"]
    assert sorted(sandbox.identities()["1"]) == sorted(str(n) for n in range(11))
    assert sandbox.identities()["1"]["10"] == "bob"
    assert sandbox.counters()["identify_ignored_user_id_limit"] == 1


def test_the_identify_month_is_a_rolling_30_days_of_the_sandbox_clock(
    sandbox: HeapSandbox,
) -> None:
    for user_id in range(10):
        identify(sandbox, "alice", str(user_id))
    sandbox.advance_clock(MONTH - 60)
    identify(sandbox, "alice", "10")
    control(sandbox, "clock", {"advance_seconds": 120})
    identify(sandbox, "alice", "11")
    identify(sandbox, "alice", "12")

    assert outcomes(sandbox)[10:] == ["ignored_user_id_limit", "applied", "applied"]
    assert sandbox.identities()["1"]["11"] == "alice"


# ---- auth_token -------------------------------------------------------------------------------


@pytest.fixture
def keyed(sandbox: HeapSandbox) -> HeapSandbox:
    """The reset sandbox with one valid api key for app_id 1."""
    sandbox.set_auth(api_keys={APP: [KEY]})
    return sandbox


def get_token(sandbox: HeapSandbox, app_id: str = APP, key: str = KEY) -> str:
    response = requests.post(sandbox.url + AUTH, auth=(app_id, key), timeout=TIMEOUT)
    assert response.status_code == 200
    return response.json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def delete(sandbox: HeapSandbox, token: str, users: Any) -> requests.Response:
    """POST a user deletion body (a list of users, or a whole body when given a dict)."""
    body = users if isinstance(users, dict) else {"users": users}
    return post(sandbox, DELETION, body, headers=bearer(token))


def err(response: requests.Response) -> str:
    """The User Deletion API's error message: ``{"err": {"message": ...}}``."""
    body = response.json()
    assert set(body) == {"err"}
    return body["err"]["message"]


def test_auth_token_exchanges_basic_credentials_for_a_bearer_token(keyed: HeapSandbox) -> None:
    first = requests.post(keyed.url + AUTH, auth=(APP, KEY), timeout=TIMEOUT)
    second = get_token(keyed)

    assert first.status_code == 200
    assert list(first.json()) == ["access_token"]
    token = first.json()["access_token"]
    assert type(token) is str and len(token) >= 32 and token != second
    tokens = keyed.auth()["tokens"]
    described = [(t["number"], t["app_id"], t["valid"]) for t in tokens]
    assert described == [(1, APP, True), (2, APP, True)]
    assert tokens[0]["expires_at"] - tokens[0]["issued_at"] == 300
    assert keyed.counters()["tokens_issued"] == 2
    assert keyed.requests_log()[0]["form"] is None


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        basic(f"{APP}:wrong-{SECRET}"),
        basic(f"2:{KEY}"),  # the right key with another environment's ID
        basic(f"{SECRET}:{KEY}"),
        basic(f"{APP}{KEY}"),
        basic(f"{APP}:"),
        "Basic %%%" + SECRET,
        f"Bearer {SECRET}",
        basic(f"{APP}:{KEY}").replace("Basic", "Digest"),
    ],
)
def test_auth_token_refuses_wrong_or_malformed_credentials(
    keyed: HeapSandbox, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = requests.post(keyed.url + AUTH, headers=headers, timeout=TIMEOUT)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    message = err(response)
    assert message and SECRET not in message and KEY not in response.text
    assert keyed.counters()["auth_refused_401"] == 1
    assert keyed.auth()["tokens"] == []


def test_basic_scheme_is_case_insensitive(keyed: HeapSandbox) -> None:
    headers = {"Authorization": basic(f"{APP}:{KEY}").replace("Basic", "basic")}

    assert requests.post(keyed.url + AUTH, headers=headers, timeout=TIMEOUT).status_code == 200


def test_without_configured_keys_every_credential_is_refused(sandbox: HeapSandbox) -> None:
    response = requests.post(sandbox.url + AUTH, auth=(APP, KEY), timeout=TIMEOUT)

    assert response.status_code == 401


def test_api_keys_are_configured_over_the_control_api(sandbox: HeapSandbox) -> None:
    configured = control(sandbox, "auth", {"api_keys": {"9": ["a", "b"]}})
    replaced = control(sandbox, "auth", {"api_keys": {"8": ["c"]}, "token_lifetime_seconds": 60})

    assert configured.json()["api_keys"] == {"9": ["a", "b"]}
    assert replaced.json() == {"api_keys": {"8": ["c"]}, "token_lifetime_seconds": 60, "tokens": []}
    assert get_token(sandbox, "8", "c")
    assert requests.post(sandbox.url + AUTH, auth=("9", "a"), timeout=TIMEOUT).status_code == 401
    [issued] = control(sandbox, "auth").json()["tokens"]
    assert issued["expires_at"] - issued["issued_at"] == 60


@pytest.mark.parametrize(
    "body",
    [
        {"api_keys": ["k"]},
        {"api_keys": {"1:2": ["k"]}},
        {"api_keys": {"": ["k"]}},
        {"api_keys": {"1": "k"}},
        {"api_keys": {"1": [""]}},
        {"token_lifetime_seconds": 0},
        {"token_lifetime_seconds": "300"},
        {"api_key": {"1": ["k"]}},
        ["k"],
    ],
)
def test_invalid_auth_settings_are_refused(sandbox: HeapSandbox, body: Any) -> None:
    response = control(sandbox, "auth", body)

    assert response.status_code == 400
    assert sandbox.auth()["api_keys"] == {}


def test_constructor_api_keys_survive_a_reset_and_control_keys_do_not() -> None:
    with HeapSandbox(api_keys={7: ["seven"]}, token_lifetime_seconds=10) as server:
        server.set_auth(api_keys={"8": ["eight"]})
        server.reset()

        assert server.auth()["api_keys"] == {"7": ["seven"]}
        assert server.auth()["token_lifetime_seconds"] == 10
        assert get_token(server, "7", "seven")


def test_a_token_expires_after_its_lifetime_on_the_sandbox_clock(keyed: HeapSandbox) -> None:
    token = get_token(keyed)
    keyed.advance_clock(299)
    before = delete(keyed, token, [{"identity": "a"}])
    keyed.advance_clock(1)
    after = delete(keyed, token, [{"identity": "b"}])

    assert before.status_code == 201
    assert after.status_code == 401 and "expired" in err(after)
    assert after.headers["WWW-Authenticate"].startswith("Bearer")
    assert [t["valid"] for t in keyed.auth()["tokens"]] == [False]
    assert delete(keyed, get_token(keyed), [{"identity": "b"}]).status_code == 201


def test_expire_tokens_expires_every_token_now(keyed: HeapSandbox) -> None:
    old = [get_token(keyed), get_token(keyed)]
    expired = control(keyed, "auth/expire", {})
    fresh = get_token(keyed)

    assert expired.json() == {"expired": 2}
    assert [delete(keyed, token, [{"user_id": 1}]).status_code for token in old] == [401, 401]
    assert delete(keyed, fresh, [{"user_id": 1}]).status_code == 201
    assert keyed.expire_tokens() == 1


def test_clock_control_advances_and_validates(sandbox: HeapSandbox) -> None:
    start = control(sandbox, "clock").json()
    moved = control(sandbox, "clock", {"advance_seconds": 3600}).json()

    assert start["offset_seconds"] == 0 and moved["offset_seconds"] == 3600
    assert moved["now"] - start["now"] >= 3600
    assert control(sandbox, "clock", {"advance_seconds": -1}).status_code == 400
    assert control(sandbox, "clock", {}).status_code == 400


# ---- user_deletion ----------------------------------------------------------------------------


def test_user_deletion_is_accepted_and_recorded(keyed: HeapSandbox) -> None:
    post(keyed, TRACK, {"app_id": APP, **event()})
    token = get_token(keyed)
    users = [{"identity": "alice@example.com"}, {"user_id": MAX_USER_ID}, {"user_id": 0}]

    first = delete(keyed, token, users)
    second = delete(keyed, token, [{"identity": "bob"}])

    assert first.status_code == second.status_code == 201
    answer = first.json()
    request_id = answer["deletion_request_id"]
    assert answer == {
        "deletion_request_id": request_id,
        "deletion_request_location": STATUS + request_id,
        "status": "pending",
    }
    assert request_id != second.json()["deletion_request_id"]
    [record, _] = keyed.deletion_requests()
    assert (record["deletion_request_id"], record["app_id"], record["users"]) == (
        request_id,
        APP,
        users,
    )
    assert record["token_number"] == 1
    assert control(keyed, "deletions").json() == {"requests": keyed.deletion_requests()}
    assert len(keyed.accepted("track")) == 1  # recorded, not applied
    assert keyed.counters()["deletion_requests"] == 2
    assert keyed.counters()["deletion_users"] == 4
    entry = keyed.requests_log()[-1]
    assert (entry["path"], entry["form"], entry["items"], entry["status"]) == (
        DELETION,
        "bulk",
        1,
        201,
    )


def test_user_deletion_takes_10000_users_and_refuses_10001(keyed: HeapSandbox) -> None:
    token = get_token(keyed)
    users = [{"user_id": n} for n in range(10_000)]

    accepted = delete(keyed, token, users)
    refused = delete(keyed, token, [*users, {"identity": "one too many"}])

    assert accepted.status_code == 201
    assert refused.status_code == 400
    assert err(refused) == "users: more than 10000 items"
    assert [len(record["users"]) for record in keyed.deletion_requests()] == [10_000]


INVALID_DELETION = [
    ([{"identity": SECRET, "user_id": 31337}], "users[0].identity: identity and user_id cannot"),
    ([{"identity": "a"}, {}], "users[1].identity: identity or user_id is required"),
    ([{"user_id": "31337"}], "users[0].user_id: must be an integer"),
    ([{"user_id": 31337.0}], "users[0].user_id: must be an integer"),
    ([{"user_id": True}], "users[0].user_id: must be an integer"),
    ([{"user_id": -31337}], "users[0].user_id: must be an integer from 0 to 2**53-1"),
    ([{"user_id": 2**53}], "users[0].user_id: must be an integer from 0 to 2**53-1"),
    ([{"identity": ""}], "users[0].identity: must not be empty"),
    ([{"identity": LONG}], "users[0].identity: longer than 255 characters"),
    ([{"identity": 31337}], "users[0].identity: must be a string"),
    ([{"identity": "a", "email": SECRET}], "users[0].email: unknown field"),
    ([SECRET], "users[0]: must be an object"),
    ([], "users: must contain at least 1 item"),
    ({"users": {"identity": SECRET}}, "users: must be an array"),
    ({"app_id": "1", "users": [{"identity": "a"}]}, "app_id: unexpected top-level key"),
    ({}, "users: required"),
]


@pytest.mark.parametrize(("users", "expected"), INVALID_DELETION)
def test_invalid_user_deletion_is_rejected_without_echoing_the_value(
    keyed: HeapSandbox, users: Any, expected: str
) -> None:
    response = delete(keyed, get_token(keyed), users)

    assert response.status_code == 400
    message = err(response)
    assert expected in message
    assert SECRET not in message and "31337" not in message
    assert keyed.deletion_requests() == []


def test_user_deletion_needs_a_json_object(keyed: HeapSandbox) -> None:
    headers = bearer(get_token(keyed))
    url = keyed.url + DELETION
    as_text = requests.post(url, data=b"{}", headers={**headers, "Content-Type": "text/plain"})
    broken = requests.post(url, data=b"{", headers={**headers, "Content-Type": "application/json"})
    listed = post(keyed, DELETION, [{"identity": "a"}], headers=headers)
    # Heap's own Postman guide sends "Content-type: Application/json".
    cased_headers = {**headers, "Content-Type": "Application/json"}
    cased = requests.post(url, data=b'{"users":[{"user_id":1}]}', headers=cased_headers)

    assert err(as_text) == "Content-Type: must be application/json"
    assert err(broken) == "body: invalid JSON"
    assert err(listed) == "body: must be a JSON object"
    assert cased.status_code == 201


@settings(max_examples=100, deadline=None)
@given(value=USER_ID_VALUES)
def test_deletion_user_id_rule_holds_for_generated_values(server: HeapSandbox, value: Any) -> None:
    server.reset()
    server.set_auth(api_keys={APP: [KEY]})

    response = delete(server, get_token(server), [{"user_id": value}])

    valid = type(value) is int and 0 <= value <= MAX_USER_ID
    assert response.status_code == (201 if valid else 400)
    assert len(server.deletion_requests()) == (1 if valid else 0)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", f"Bearer {SECRET}", basic(f"{APP}:{KEY}"), "Token abc"],
)
def test_user_deletion_refuses_a_missing_or_unknown_token_before_reading_the_body(
    keyed: HeapSandbox, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    body = {"users": [{"identity": SECRET, "user_id": 1}]}  # invalid too: 401 comes first

    response = post(keyed, DELETION, body, headers=headers)

    assert response.status_code == 401
    assert SECRET not in err(response)
    assert keyed.deletion_requests() == []


def test_deletion_status_reports_pending_for_the_tokens_app_only(keyed: HeapSandbox) -> None:
    keyed.set_auth(api_keys={APP: [KEY], "2": ["two"]})
    token = get_token(keyed)
    request_id = delete(keyed, token, [{"user_id": 1}]).json()["deletion_request_id"]
    url = keyed.url + STATUS

    pending = requests.get(url + request_id, headers=bearer(token), timeout=TIMEOUT)
    other_app = requests.get(url + request_id, headers=bearer(get_token(keyed, "2", "two")))
    unknown = requests.get(url + "no-such-id", headers=bearer(token), timeout=TIMEOUT)
    anonymous = requests.get(url + request_id, timeout=TIMEOUT)
    posted = requests.post(url + request_id, headers=bearer(token), timeout=TIMEOUT)

    assert (pending.status_code, pending.json()) == (200, {"status": "pending"})
    assert other_app.status_code == unknown.status_code == 404
    assert err(unknown) == "deletion request not found"
    assert anonymous.status_code == 401
    assert (posted.status_code, posted.headers["Allow"]) == (405, "GET")
    assert requests.get(url, headers=bearer(token), timeout=TIMEOUT).status_code == 404


# ---- faults and the script on the new endpoints ------------------------------------------------


def test_expire_token_answer_makes_the_next_deletion_and_its_retries_401(
    keyed: HeapSandbox,
) -> None:
    token = get_token(keyed)
    keyed.script("user_deletion", {"expire_token": True})

    expired = delete(keyed, token, [{"user_id": 1}])
    retried = delete(keyed, token, [{"user_id": 1}])
    renewed = delete(keyed, get_token(keyed), [{"user_id": 1}])

    assert (expired.status_code, retried.status_code, renewed.status_code) == (401, 401, 201)
    assert [record["token_number"] for record in keyed.deletion_requests()] == [2]
    assert [t["valid"] for t in keyed.auth()["tokens"]] == [False, True]


def test_scripted_answers_are_consumed_one_per_request_in_order(keyed: HeapSandbox) -> None:
    token = get_token(keyed)
    scripted = control(
        keyed,
        "script",
        {
            "endpoint": "user_deletion",
            "answers": [
                {"pass": True},
                {"status": 401},
                {"status": 500, "times": 2},
                {"status": 429, "retry_after": 3, "message": "slow down"},
            ],
        },
    )
    responses = [delete(keyed, token, [{"user_id": n}]) for n in range(6)]

    assert scripted.status_code == 200
    assert scripted.json()["queued"]["user_deletion"] == [
        {"pass": True},
        {"status": 401},
        {"status": 500},
        {"status": 500},
        {"status": 429, "retry_after": 3, "message": "slow down"},
    ]
    assert [r.status_code for r in responses] == [201, 401, 500, 500, 429, 201]
    assert err(responses[1]) == "Unauthorized" and err(responses[4]) == "slow down"
    assert responses[4].headers["Retry-After"] == "3"
    assert [r["users"] for r in keyed.deletion_requests()] == [[{"user_id": 0}], [{"user_id": 5}]]
    assert keyed.counters()["scripted"] == 4
    assert control(keyed, "script").json() == {"queued": {}, "hanging": 0}
    assert get_token(keyed)  # the script was for user_deletion only


def test_a_hung_deletion_request_holds_until_released_and_stores_nothing(
    keyed: HeapSandbox,
) -> None:
    token = get_token(keyed)
    keyed.script("user_deletion", {"pass": True}, {"hang": True})
    first = delete(keyed, token, [{"identity": "first"}])
    outcome: list[BaseException] = []

    def second_request() -> None:
        try:
            delete(keyed, token, [{"identity": "second"}])
        except requests.exceptions.ConnectionError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=second_request)
    thread.start()
    waited = control(keyed, "wait_hanging", {"count": 1, "timeout_seconds": TIMEOUT}).json()
    log_while_hanging = keyed.requests_log()
    released = control(keyed, "release", {}).json()
    thread.join(TIMEOUT)

    assert first.status_code == 201
    assert waited == {"hanging": 1, "reached": True}
    assert [entry["status"] for entry in log_while_hanging] == [200, 201]
    assert released == {"released": 1}
    assert len(outcome) == 1  # the held request was dropped unanswered
    assert [r["users"] for r in keyed.deletion_requests()] == [[{"identity": "first"}]]
    assert keyed.counters()["hung"] == 1 and keyed.scripted()["hanging"] == 0


def test_wait_hanging_times_out_when_nothing_hangs(sandbox: HeapSandbox) -> None:
    assert sandbox.wait_hanging(1, timeout=0) is False
    assert control(sandbox, "wait_hanging", {"timeout_seconds": 0}).json() == {
        "hanging": 0,
        "reached": False,
    }


def test_reset_and_stop_release_hung_requests() -> None:
    with HeapSandbox() as server:
        server.script("track", {"hang": True}, {"hang": True})
        errors: list[BaseException] = []

        def hang() -> None:
            try:
                post(server, TRACK, {"app_id": "1", **event()})
            except requests.exceptions.ConnectionError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=hang) for _ in range(2)]
        threads[0].start()
        assert server.wait_hanging(1, timeout=TIMEOUT)
        server.reset()
        threads[0].join(TIMEOUT)
        server.script("track", {"hang": True})
        threads[1].start()
        assert server.wait_hanging(1, timeout=TIMEOUT)
    threads[1].join(TIMEOUT)

    assert len(errors) == 2 and not any(thread.is_alive() for thread in threads)


def test_drop_answers_on_deletion_drop_before_or_after_recording(keyed: HeapSandbox) -> None:
    token = get_token(keyed)
    keyed.script("user_deletion", {"drop": True}, {"drop_after_store": True})

    for _ in range(2):
        with pytest.raises(requests.exceptions.ConnectionError):
            delete(keyed, token, [{"user_id": 1}])

    assert len(keyed.deletion_requests()) == 1  # only the second was recorded
    assert keyed.counters()["dropped"] == 2


def test_global_faults_apply_to_the_new_endpoints(keyed: HeapSandbox) -> None:
    keyed.set_faults(fixed_status=503, fixed_message="maintenance")

    auth = requests.post(keyed.url + AUTH, auth=(APP, KEY), timeout=TIMEOUT)
    identified = post(keyed, IDENTIFY, {"app_id": APP, "identity": "a", "user_id": "1"})

    assert (auth.status_code, err(auth)) == (503, "maintenance")
    assert (identified.status_code, identified.json()) == (503, {"message": "maintenance"})
    keyed.set_faults(fixed_status=None, error_429_rate=1.0, retry_after=2)
    limited = requests.post(keyed.url + AUTH, auth=(APP, KEY), timeout=TIMEOUT)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "2")
    keyed.set_faults(error_429_rate=0.0, drop_rate=1.0)
    with pytest.raises(requests.exceptions.ConnectionError):
        post(keyed, IDENTIFY, {"app_id": APP, "identity": "a", "user_id": "1"})
    assert keyed.identify_calls() == [] and keyed.auth()["tokens"] == []


def test_endpoints_scope_limits_faults_to_the_named_endpoints(keyed: HeapSandbox) -> None:
    changed = control(keyed, "faults", {"error_500_rate": 1.0, "endpoints": ["user_deletion"]})

    token = get_token(keyed)
    tracked = post(keyed, TRACK, {"app_id": APP, **event()})
    deleted = delete(keyed, token, [{"user_id": 1}])

    assert changed.json()["endpoints"] == ["user_deletion"]
    assert tracked.status_code == 200
    assert (deleted.status_code, err(deleted)) == (500, "internal server error")
    assert keyed.counters()["injected_500"] == 1
    assert control(keyed, "faults", {"endpoints": ["nope"]}).status_code == 400
    with pytest.raises(ValueError):
        keyed.set_faults(endpoints=[])


def test_latency_rate_limit_and_reject_marker_on_the_new_endpoints(keyed: HeapSandbox) -> None:
    keyed.set_faults(
        rate_limit={"events": 1, "window_seconds": 30},
        reject_marker="BAD-ROW",
        endpoints=["identify", "user_deletion"],
    )
    token = get_token(keyed)

    first = post(keyed, IDENTIFY, {"app_id": APP, "identity": "a", "user_id": "1"})
    limited = post(keyed, IDENTIFY, {"app_id": APP, "identity": "a", "user_id": "2"})
    marked = post(keyed, IDENTIFY, {"app_id": APP, "identity": "x BAD-ROW", "user_id": "3"})
    refused = delete(keyed, token, [{"identity": "ok"}, {"identity": "x BAD-ROW"}])
    keyed.set_faults(rate_limit=None, reject_marker=None, latency_ms=200)
    started = time.monotonic()
    slow = delete(keyed, token, [{"identity": "ok"}])
    elapsed = time.monotonic() - started

    assert first.status_code == 200
    assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 30
    assert marked.json() == {"message": "body: refused by the sandbox's reject_marker rule"}
    assert err(refused) == "users[1]: refused by the sandbox's reject_marker rule"
    assert slow.status_code == 201 and elapsed >= 0.2
    assert [call["user_id"] for call in keyed.identify_calls()] == ["1"]


def test_requests_are_counted_per_endpoint(keyed: HeapSandbox) -> None:
    token = get_token(keyed)
    post(keyed, TRACK, {"app_id": APP, **event()})
    post(keyed, IDENTIFY, {"app_id": APP, "identity": "a", "user_id": "1"})
    post(keyed, IDENTIFY, {"app_id": APP})
    request_id = delete(keyed, token, [{"user_id": 1}]).json()["deletion_request_id"]
    requests.get(keyed.url + STATUS + request_id, headers=bearer(token), timeout=TIMEOUT)

    counters = control(keyed, "counters").json()
    per_endpoint = {name: value for name, value in counters.items() if name.startswith("requests_")}
    assert per_endpoint == {
        "requests_track": 1,
        "requests_add_user_properties": 0,
        "requests_add_account_properties": 0,
        "requests_identify": 2,
        "requests_auth_token": 1,
        "requests_user_deletion": 1,
        "requests_deletion_status": 1,
    }
    assert counters["requests"] == 6


@pytest.mark.parametrize(
    ("endpoint", "answers"),
    [
        ("nowhere", [{"pass": True}]),
        ("track", []),
        ("track", [{"pass": True, "drop": True}]),
        ("track", [{}]),
        ("track", [{"status": 200}]),
        ("track", [{"status": "500"}]),
        ("track", [{"drop": False}]),
        ("track", [{"drop": True, "message": "x"}]),
        ("track", [{"status": 500, "retry_after": -1}]),
        ("track", [{"pass": True, "times": 0}]),
        ("track", [{"expire_token": True}]),
        ("user_deletion", [{"pass": True}, "drop"]),
    ],
)
def test_invalid_scripts_are_refused_whole(
    sandbox: HeapSandbox, endpoint: str, answers: list
) -> None:
    response = control(sandbox, "script", {"endpoint": endpoint, "answers": answers})

    assert response.status_code == 400
    assert sandbox.scripted() == {"queued": {}, "hanging": 0}


def test_reset_clears_the_new_state(keyed: HeapSandbox) -> None:
    token = get_token(keyed)
    delete(keyed, token, [{"user_id": 1}])
    identify(keyed, "a", "1")
    keyed.script("track", {"status": 500})
    keyed.advance_clock(10)

    control(keyed, "reset", {})

    assert keyed.deletion_requests() == [] and keyed.identify_calls() == []
    assert keyed.auth() == {"api_keys": {}, "token_lifetime_seconds": 300, "tokens": []}
    assert keyed.scripted() == {"queued": {}, "hanging": 0}
    assert keyed.clock()["offset_seconds"] == 0
    assert post(keyed, TRACK, {"app_id": APP, **event()}).status_code == 200


def test_cli_takes_api_keys() -> None:
    project = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "integration_tests.heap_sandbox", "--port", "0"]
    command += ["--api-key", f"{APP}:{KEY}", "--token-lifetime-seconds", "60"]
    with subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, text=True) as process:
        try:
            url = process.stdout.readline().strip().removeprefix("listening on ")
            token = requests.post(url + AUTH, auth=(APP, KEY), timeout=TIMEOUT).json()
            deleted = requests.post(
                url + DELETION,
                json={"users": [{"user_id": 1}]},
                headers=bearer(token["access_token"]),
                timeout=TIMEOUT,
            )
            auth = requests.get(url + "/_sandbox/auth", timeout=TIMEOUT).json()

            assert deleted.status_code == 201
            assert auth["token_lifetime_seconds"] == 60 and auth["api_keys"] == {APP: [KEY]}
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=5)
