"""Tests for the Heap sandbox over real HTTP.

The sandbox stands in for Heap in the connector's integration tests and benchmarks, so these
tests pin its contract from the outside: what it accepts, what it refuses (and that refusals
never echo user data unless the echo_refused fault asks for it), and how each injected fault
looks to an HTTP client.
"""

from __future__ import annotations

import email.utils
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

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
