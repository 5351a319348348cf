"""HeapClient: request bodies, headers, and the mapping of every answer onto a typed outcome."""

from __future__ import annotations

import base64
import email.utils
import json
import socket
import time
from collections.abc import Iterator

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from destination_heap_analytics.heap.client import (
    HeapClient,
    HeapConfigurationError,
    HeapRejected,
    HeapTransientError,
    Receipt,
    UserDeletionClient,
    parse_retry_after,
)
from destination_heap_analytics.heap.privacy import MAX_DESCRIPTION_WORDS, NOTHING_SAFE_TO_SHOW
from unit_tests.fakes import FakeClock

URL = "https://heap.test/api/track"
APP_ID = "app-42"


@pytest.fixture
def single_client() -> Iterator[HeapClient]:
    client = HeapClient(URL, APP_ID, bulk_key=None)
    yield client
    client.close()


@pytest.fixture
def bulk_client() -> Iterator[HeapClient]:
    client = HeapClient(URL, APP_ID, bulk_key="events")
    yield client
    client.close()


# --- body -------------------------------------------------------------------------------------


def test_single_body_is_app_id_then_item_fields_in_order(single_client):
    item = {"identity": "u1", "event": "signup", "properties": {"plan": "pro"}}

    payload = json.loads(single_client.body([item]))

    assert payload == {"app_id": APP_ID, **item}
    assert list(payload) == ["app_id", "identity", "event", "properties"]


@pytest.mark.parametrize("count", [0, 2])
def test_single_body_rejects_other_than_one_item(single_client, count):
    with pytest.raises(ValueError):
        single_client.body([{"identity": str(n)} for n in range(count)])


def test_bulk_body_wraps_items_under_bulk_key(bulk_client):
    items = [{"identity": "u1", "event": "a"}, {"identity": "u2", "event": "b"}]

    payload = json.loads(bulk_client.body(items))

    assert payload == {"app_id": APP_ID, "events": items}
    assert list(payload) == ["app_id", "events"]


def test_send_posts_body_as_json(bulk_client, requests_mock):
    requests_mock.post(URL, status_code=200)
    items = [{"identity": "u1", "event": "a"}]

    bulk_client.send(items)

    request = requests_mock.last_request
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == {"app_id": APP_ID, "events": items}


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_returns_normally(bulk_client, requests_mock, status):
    requests_mock.post(URL, status_code=status)

    assert bulk_client.send([{"identity": "u1"}]) is None
    assert requests_mock.call_count == 1


def test_post_uses_explicit_url_when_given(bulk_client, requests_mock):
    other = "https://heap.test/api/other"
    requests_mock.post(other, status_code=200)

    bulk_client.post(b"{}", url=other)

    assert requests_mock.last_request.url == other


# --- rejected bodies --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 413, 422])
def test_rejected_statuses_raise_heap_rejected_with_json_message(
    bulk_client, requests_mock, status
):
    requests_mock.post(URL, status_code=status, json={"message": "property too long"})

    with pytest.raises(HeapRejected) as raised:
        bulk_client.send([{"identity": "u1"}])

    assert raised.value.status == status
    assert raised.value.message == "property too long"


def test_rejected_message_taken_from_json_error_field(bulk_client, requests_mock):
    requests_mock.post(URL, status_code=400, json={"error": "identity is required"})

    with pytest.raises(HeapRejected) as raised:
        bulk_client.send([{}])

    assert raised.value.message == "identity is required"


def test_rejected_empty_json_object_gives_the_standard_phrase_not_the_servers(
    bulk_client, requests_mock
):
    requests_mock.post(URL, status_code=400, json={}, reason="alice@example.com is not allowed")

    with pytest.raises(HeapRejected) as raised:
        bulk_client.send([{}])

    assert raised.value.message == "Bad Request"


def test_rejected_text_body_used_as_message(bulk_client, requests_mock):
    requests_mock.post(
        URL,
        status_code=400,
        text="  event name is invalid \n",
        headers={"Content-Type": "text/plain"},
    )

    with pytest.raises(HeapRejected) as raised:
        bulk_client.send([{}])

    assert raised.value.message == "event name is invalid"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"json": {"message": 'identity "alice@example.com" is invalid'}},
        {"json": {"errors": ["identity 'alice@example.com' is invalid"]}},
        {"text": "identity 'alice@example.com' is invalid", "headers": {"Content-Type": "text"}},
        {"text": '{"identity": "alice@example.com"} is invalid'},
    ],
    ids=["json message", "json errors", "text", "unparseable json"],
)  # fmt: skip
def test_rejected_message_shows_only_vocabulary_words(bulk_client, requests_mock, kwargs):
    requests_mock.post(URL, status_code=400, **kwargs)

    with pytest.raises(HeapRejected) as raised:
        bulk_client.send([{}])

    assert raised.value.message == "identity is invalid"
    assert "alice" not in str(raised.value) and "example" not in str(raised.value)


def test_rejected_message_without_vocabulary_words_says_so(bulk_client, requests_mock):
    requests_mock.post(URL, status_code=400, json={"message": "alice@example.com"})

    with pytest.raises(HeapRejected) as raised:
        bulk_client.send([{}])

    assert raised.value.message == NOTHING_SAFE_TO_SHOW


@pytest.mark.parametrize(
    "kwargs",
    [{"json": {"message": "must be a string " * 1000}}, {"text": "null is not allowed " * 1000}],
    ids=["json", "text"],
)
def test_rejected_message_is_bounded(bulk_client, requests_mock, kwargs):
    requests_mock.post(URL, status_code=400, **kwargs)

    with pytest.raises(HeapRejected) as raised:
        bulk_client.send([{}])

    assert len(raised.value.message.split(" ")) == MAX_DESCRIPTION_WORDS + 1


# --- transient failures -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_transient_statuses_raise_transient_error(bulk_client, requests_mock, status):
    requests_mock.post(URL, status_code=status)

    with pytest.raises(HeapTransientError) as raised:
        bulk_client.send([{}])

    assert raised.value.retry_after is None
    assert str(status) in str(raised.value)


@pytest.mark.parametrize(("header", "expected"), [("0", 0.0), ("1.5", 1.5), ("7", 7.0)])
def test_transient_error_carries_retry_after_seconds(bulk_client, requests_mock, header, expected):
    requests_mock.post(URL, status_code=429, headers={"Retry-After": header})

    with pytest.raises(HeapTransientError) as raised:
        bulk_client.send([{}])

    assert raised.value.retry_after == expected


def test_transient_error_carries_retry_after_http_date(bulk_client, requests_mock):
    date = email.utils.formatdate(time.time() + 5, usegmt=True)
    requests_mock.post(URL, status_code=503, headers={"Retry-After": date})

    with pytest.raises(HeapTransientError) as raised:
        bulk_client.send([{}])

    assert 3 <= raised.value.retry_after <= 6


def test_transient_error_garbage_retry_after_is_none(bulk_client, requests_mock):
    requests_mock.post(URL, status_code=429, headers={"Retry-After": "soon-ish"})

    with pytest.raises(HeapTransientError) as raised:
        bulk_client.send([{}])

    assert raised.value.retry_after is None


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ConnectTimeout,
        requests.exceptions.ReadTimeout,
        requests.exceptions.ConnectionError,
    ],
)
def test_network_failures_raise_transient_error(bulk_client, requests_mock, exc):
    requests_mock.post(URL, exc=exc)

    with pytest.raises(HeapTransientError) as raised:
        bulk_client.send([{}])

    assert raised.value.retry_after is None


# --- configuration errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "field"),
    [(401, "app_id"), (403, "app_id"), (404, "base_url"), (405, "base_url")],
)
def test_configuration_statuses_name_the_field_to_fix(bulk_client, requests_mock, status, field):
    requests_mock.post(URL, status_code=status)

    with pytest.raises(HeapConfigurationError) as raised:
        bulk_client.send([{}])

    assert raised.value.field == field
    assert str(status) in str(raised.value)


@pytest.mark.parametrize(
    ("status", "phrase"), [(401, "Unauthorized"), (403, "Forbidden"), (404, "Not Found")]
)
def test_configuration_errors_use_the_standard_phrase_not_the_servers(
    bulk_client, requests_mock, status, phrase
):
    hostile = "jane.doe@example.com Baker Street"
    requests_mock.post(URL, status_code=status, reason=hostile)

    with pytest.raises(HeapConfigurationError) as raised:
        bulk_client.send([{}])

    assert str(raised.value) == f"Heap answered HTTP {status} ({phrase}) for {URL}"


@pytest.mark.parametrize("status", [429, 503])
def test_transient_errors_do_not_carry_the_servers_phrase_or_body(
    bulk_client, requests_mock, status
):
    requests_mock.post(URL, status_code=status, reason="jane.doe", text="jane.doe is throttled")

    with pytest.raises(HeapTransientError) as raised:
        bulk_client.send([{}])

    assert str(raised.value) == f"HTTP {status} from Heap"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_a_base_url_error_and_not_followed(bulk_client, requests_mock, status):
    target = "https://elsewhere.test/api/track"
    requests_mock.post(URL, status_code=status, headers={"Location": target})
    followed = requests_mock.post(target, status_code=200)

    with pytest.raises(HeapConfigurationError) as raised:
        bulk_client.send([{}])

    assert raised.value.field == "base_url"
    assert not followed.called
    assert requests_mock.call_count == 1


def test_ssl_error_is_a_base_url_error(bulk_client, requests_mock):
    requests_mock.post(URL, exc=requests.exceptions.SSLError)

    with pytest.raises(HeapConfigurationError) as raised:
        bulk_client.send([{}])

    assert raised.value.field == "base_url"


def test_dns_failure_in_connection_error_chain_is_a_base_url_error(bulk_client, requests_mock):
    error = requests.exceptions.ConnectionError("connection failed")
    error.__cause__ = socket.gaierror(-2, "Name or service not known")
    requests_mock.post(URL, exc=error)

    with pytest.raises(HeapConfigurationError) as raised:
        bulk_client.send([{}])

    assert raised.value.field == "base_url"
    assert "DNS" in str(raised.value)


# --- parse_retry_after ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0.0), ("1.5", 1.5), (" 12 ", 12.0), ("-4", 0.0)],
)
def test_parse_retry_after_seconds(value, expected):
    assert parse_retry_after(CaseInsensitiveDict({"Retry-After": value})) == expected


def test_parse_retry_after_http_date_in_future():
    date = email.utils.formatdate(time.time() + 5, usegmt=True)

    assert 3 <= parse_retry_after(CaseInsensitiveDict({"Retry-After": date})) <= 6


def test_parse_retry_after_http_date_in_past_is_zero():
    date = email.utils.formatdate(time.time() - 3600, usegmt=True)

    assert parse_retry_after(CaseInsensitiveDict({"Retry-After": date})) == 0.0


def test_parse_retry_after_header_name_is_case_insensitive():
    assert parse_retry_after(CaseInsensitiveDict({"retry-after": "3"})) == 3.0


@pytest.mark.parametrize("headers", [{}, {"Retry-After": ""}, {"Retry-After": "garbage"}])
def test_parse_retry_after_absent_or_invalid_is_none(headers):
    assert parse_retry_after(CaseInsensitiveDict(headers)) is None


# --- the User Deletion API ----------------------------------------------------------------------

DELETION_URL = "https://heap.test/api/public/v0/user_deletion"
AUTH_URL = "https://heap.test/api/public/v0/auth_token"
API_KEY = "Zq9-key"
REQUEST_ID = "0b5e3a3c-7d1f-4c8e-9a51-2f6f3b0a9d10"


@pytest.fixture
def deletion_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def deletion_client(deletion_clock) -> Iterator[UserDeletionClient]:
    client = UserDeletionClient(DELETION_URL, APP_ID, API_KEY, AUTH_URL, deletion_clock)
    yield client
    client.close()


def tokens_then(requests_mock, *tokens: str) -> None:
    requests_mock.post(
        AUTH_URL, [{"status_code": 200, "json": {"access_token": token}} for token in tokens]
    )


def accepted(request_id: str = REQUEST_ID) -> dict:
    return {
        "status_code": 201,
        "json": {
            "deletion_request_id": request_id,
            "deletion_request_location": f"/api/public/v0/deletion_status/{request_id}",
            "status": "pending",
        },
    }


def test_a_deletion_body_is_the_users_alone(deletion_client):
    users = [{"identity": "a@x.io"}, {"user_id": 123}]
    assert json.loads(deletion_client.body(users)) == {"users": users}


def test_a_deletion_asks_for_a_token_with_basic_auth_then_sends_it_as_bearer(
    deletion_client, requests_mock
):
    tokens_then(requests_mock, "t1")
    requests_mock.post(DELETION_URL, [accepted()])

    receipt = deletion_client.send([{"identity": "a@x.io"}])

    assert receipt == Receipt(REQUEST_ID)
    token_request, deletion = requests_mock.request_history
    expected = base64.b64encode(f"{APP_ID}:{API_KEY}".encode()).decode()
    assert token_request.headers["Authorization"] == f"Basic {expected}"
    assert deletion.headers["Authorization"] == "Bearer t1"
    assert "Authorization" not in requests_mock.last_request.json()


def test_the_token_is_reused_then_renewed_a_minute_before_it_expires(
    deletion_client, deletion_clock, requests_mock
):
    tokens_then(requests_mock, "t1", "t2")
    requests_mock.post(DELETION_URL, [accepted(), accepted(), accepted()])
    deletion_client.send([{"user_id": 1}])
    deletion_clock.time += 239.0
    deletion_client.send([{"user_id": 2}])
    deletion_clock.time += 1.0  # 240 s: within a minute of Heap's 5-minute lifetime
    deletion_client.send([{"user_id": 3}])

    sent = [r for r in requests_mock.request_history if r.url == DELETION_URL]
    bearers = [r.headers["Authorization"] for r in sent]
    assert bearers == ["Bearer t1", "Bearer t1", "Bearer t2"]
    assert deletion_client.tokens.obtained == 2


def test_a_401_renews_the_token_once_and_sends_the_same_body_again(deletion_client, requests_mock):
    tokens_then(requests_mock, "t1", "t2")
    requests_mock.post(DELETION_URL, [{"status_code": 401}, accepted()])
    body = deletion_client.body([{"identity": "a@x.io"}])

    assert deletion_client.post(body) == Receipt(REQUEST_ID)

    sent = [r for r in requests_mock.request_history if r.url == DELETION_URL]
    assert [r.headers["Authorization"] for r in sent] == ["Bearer t1", "Bearer t2"]
    assert [r.body for r in sent] == [body, body]


def test_a_401_after_renewal_is_the_api_keys_fault(deletion_client, requests_mock):
    tokens_then(requests_mock, "t1", "t2")
    requests_mock.post(DELETION_URL, [{"status_code": 401}, {"status_code": 401}])

    with pytest.raises(HeapConfigurationError) as raised:
        deletion_client.send([{"identity": "a@x.io"}])

    assert raised.value.field == "api_key"
    assert "Main Production environment" in str(raised.value)
    assert API_KEY not in str(raised.value) and "t2" not in str(raised.value)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_names_api_key_and_main_production(deletion_client, requests_mock, status):
    requests_mock.post(AUTH_URL, status_code=status, json={"err": {"message": "Unauthorized"}})

    with pytest.raises(HeapConfigurationError) as raised:
        deletion_client.tokens.current()

    assert raised.value.field == "api_key"
    assert "Main Production environment's ID" in str(raised.value)
    assert API_KEY not in str(raised.value)


@pytest.mark.parametrize("status", [400, 413, 422, 418])
def test_any_other_refusal_of_the_token_request_names_api_key_not_the_users(
    deletion_client, requests_mock, status
):
    """The token request carries no user: its refusal must not count as Heap refusing the
    deletion batch's users (probes, the bucket, the rejection guard)."""
    requests_mock.post(AUTH_URL, status_code=status, json={"err": {"message": "Bad Request"}})

    with pytest.raises(HeapConfigurationError) as raised:
        deletion_client.tokens.current()

    assert raised.value.field == "api_key"
    assert f"HTTP {status}" in str(raised.value) and API_KEY not in str(raised.value)
    assert "Bad Request" not in str(raised.value)


@pytest.mark.parametrize(
    "answer",
    [
        {"status_code": 503},
        {"status_code": 200, "text": "not json"},
        {"status_code": 200, "json": {"access_token": ""}},
        {"status_code": 200, "json": ["t1"]},
    ],
)
def test_a_token_answer_without_a_token_is_transient(deletion_client, requests_mock, answer):
    requests_mock.post(AUTH_URL, [answer])
    with pytest.raises(HeapTransientError):
        deletion_client.tokens.current()
    assert deletion_client.tokens.obtained == 0


@pytest.mark.parametrize(
    "request_id",
    [None, "", "a@x.io", "has space", "x" * 65, 123, "id\n2"],
)
def test_an_id_that_is_not_an_id_is_not_passed_on(deletion_client, requests_mock, request_id):
    tokens_then(requests_mock, "t1")
    requests_mock.post(
        DELETION_URL, status_code=201, json={"deletion_request_id": request_id, "status": "x"}
    )
    assert deletion_client.send([{"user_id": 1}]) == Receipt(None)


def test_heaps_err_message_is_described_in_vocabulary_words(deletion_client, requests_mock):
    tokens_then(requests_mock, "t1")
    requests_mock.post(
        DELETION_URL, status_code=400, json={"err": {"message": "users: a@x.io is invalid"}}
    )
    with pytest.raises(HeapRejected) as raised:
        deletion_client.send([{"identity": "a@x.io"}])
    assert "a@x.io" not in str(raised.value) and "users" in raised.value.message


def test_the_tokens_and_key_stay_out_of_reprs(deletion_client, requests_mock):
    tokens_then(requests_mock, "Zq9-token")
    requests_mock.post(DELETION_URL, [accepted()])
    deletion_client.send([{"user_id": 1}])
    assert "Zq9" not in repr(deletion_client.tokens)
