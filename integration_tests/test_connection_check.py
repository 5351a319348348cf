"""check_connection against the local Heap sandbox (real HTTP)."""

from __future__ import annotations

import pytest

from destination_heap_analytics.airbyte import connection_check
from destination_heap_analytics.airbyte.connection_check import (
    PREFLIGHT_IDEMPOTENCY_KEY,
    check_connection,
)
from destination_heap_analytics.config.settings import HeapConfig, parse_config

TRACK_API = {
    "api_type": "track",
    "identity_column": "user",
    "event_column": "event",
    "property_columns": "*",
}
ACCOUNT_API = {
    "api_type": "add_account_properties",
    "account_id_column": "account",
    "property_columns": "*",
}


@pytest.fixture(autouse=True)
def short_retries(monkeypatch) -> None:
    monkeypatch.setattr(connection_check, "CHECK_RETRY_SECONDS", 1.0)


def config(base_url: str, api: dict | None = None) -> HeapConfig:
    return parse_config(
        {"app_id": "11", "base_url": base_url, "max_events_per_minute": 0, "api": api or TRACK_API}
    )


def test_success_returns_none_and_sends_one_preflight_event(sandbox):
    assert check_connection(config(sandbox.url)) is None

    (event,) = sandbox.accepted("track")
    assert event["idempotency_key"] == PREFLIGHT_IDEMPOTENCY_KEY == "airbyte-preflight-check"
    assert event["_app_id"] == "11"
    assert [entry["path"] for entry in sandbox.requests_log()] == ["/api/track"]


def test_preflight_goes_to_track_even_for_account_properties(sandbox):
    assert check_connection(config(sandbox.url, ACCOUNT_API)) is None

    assert len(sandbox.accepted("track")) == 1
    assert sandbox.accepted("add_account_properties") == []
    assert [entry["path"] for entry in sandbox.requests_log()] == ["/api/track"]


def test_repeated_checks_send_the_same_idempotency_key(sandbox):
    check_connection(config(sandbox.url))
    check_connection(config(sandbox.url))

    keys = [entry["body"]["idempotency_key"] for entry in sandbox.requests_log()]
    assert keys == [PREFLIGHT_IDEMPOTENCY_KEY] * 2
    assert len(sandbox.accepted("track")) == 1


@pytest.mark.parametrize(
    "status, field, other", [(404, "base_url", "app_id"), (401, "app_id", "base_url")]
)
def test_configuration_statuses_name_the_field_to_fix(sandbox, status, field, other):
    sandbox.set_faults(fixed_status=status)

    message = check_connection(config(sandbox.url))

    assert message is not None
    assert f"'{field}'" in message
    assert other not in message


def test_refused_preflight_event_names_app_id(sandbox):
    sandbox.set_faults(fixed_status=400, fixed_message="invalid app_id")

    message = check_connection(config(sandbox.url))

    assert message is not None
    assert "refused the preflight event" in message
    assert "'app_id'" in message


def test_transient_errors_are_retried_then_succeed(sandbox, monkeypatch):
    sandbox.set_faults(fixed_status=503)
    retry = connection_check.call_with_retries

    def heal_after_first_attempt(operation, *args, **kwargs):
        def attempt():
            try:
                return operation()
            finally:
                sandbox.set_faults(fixed_status=None)

        return retry(attempt, *args, **kwargs)

    monkeypatch.setattr(connection_check, "call_with_retries", heal_after_first_attempt)

    assert check_connection(config(sandbox.url)) is None
    assert [entry["status"] for entry in sandbox.requests_log()] == [503, 200]


def test_unreachable_host_returns_a_message_naming_base_url():
    message = check_connection(config("http://127.0.0.1:9"))

    assert message is not None
    assert "could not be reached" in message
    assert "'base_url'" in message
