"""DestinationHeapAnalytics in-process (check and write) against the local Heap sandbox over real
HTTP."""

from __future__ import annotations

import logging

import pytest
from airbyte_cdk.models import (
    AirbyteMessage,
    AirbyteMessageSerializer,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteCatalogSerializer,
    FailureType,
    Status,
    Type,
)
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_heap_analytics.airbyte import connection_check, destination
from destination_heap_analytics.airbyte.destination import DestinationHeapAnalytics

logger = logging.getLogger("test_destination")


@pytest.fixture(autouse=True)
def short_check_retries(monkeypatch) -> None:
    monkeypatch.setattr(connection_check, "CHECK_RETRY_SECONDS", 1.0)


def make_config(base_url: str, **api: str) -> dict:
    return {
        "app_id": "11",
        "base_url": base_url,
        "max_events_per_minute": 0,
        "api": api
        or {
            "api_type": "track",
            "identity_column": "user",
            "event_column": "event",
            "property_columns": "*",
        },
    }


def bad_config(base_url: str) -> dict:
    """Track without an identity column."""
    return make_config(base_url, api_type="track", event_column="event", property_columns="*")


def catalog() -> ConfiguredAirbyteCatalog:
    return ConfiguredAirbyteCatalogSerializer.load(
        {
            "streams": [
                {
                    "stream": {
                        "name": "users",
                        "json_schema": {"type": "object"},
                        "supported_sync_modes": ["full_refresh"],
                    },
                    "sync_mode": "full_refresh",
                    "destination_sync_mode": "append",
                }
            ]
        }
    )


def record(user: str, event: str) -> AirbyteMessage:
    return AirbyteMessageSerializer.load(
        {
            "type": "RECORD",
            "record": {"stream": "users", "data": {"user": user, "event": event}, "emitted_at": 1},
        }
    )


def state(value: int) -> AirbyteMessage:
    return AirbyteMessageSerializer.load(
        {
            "type": "STATE",
            "state": {
                "type": "STREAM",
                "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {"v": value}},
            },
        }
    )


# --- check ------------------------------------------------------------------------------------


def test_check_succeeds_for_a_good_config(sandbox):
    status = DestinationHeapAnalytics().check(logger, make_config(sandbox.url))

    assert status.status == Status.SUCCEEDED
    assert len(sandbox.accepted("track")) == 1


def test_check_fails_naming_the_field_of_a_bad_config(sandbox):
    status = DestinationHeapAnalytics().check(logger, bad_config(sandbox.url))

    assert status.status == Status.FAILED
    assert "'api.identity_column'" in status.message
    assert sandbox.requests_log() == []


def test_check_fails_naming_base_url_when_heap_answers_404(sandbox):
    sandbox.set_faults(fixed_status=404)

    status = DestinationHeapAnalytics().check(logger, make_config(sandbox.url))

    assert status.status == Status.FAILED
    assert "'base_url'" in status.message


def test_check_answers_failed_without_details_on_an_unexpected_exception(sandbox, monkeypatch):
    def explode(config):
        raise RuntimeError("secret-value-42")

    monkeypatch.setattr(destination, "check_connection", explode)

    status = DestinationHeapAnalytics().check(logger, make_config(sandbox.url))

    assert status.status == Status.FAILED
    assert status.message == "Unexpected error during check: RuntimeError"
    assert "secret-value-42" not in status.message


# --- write ------------------------------------------------------------------------------------


def test_write_returns_states_in_order_after_their_records_are_accepted(sandbox):
    messages = [state(1), record("u1", "signup"), record("u2", "login"), state(2)]
    accepted_when_state_out: list[int] = []

    output = []
    for message in DestinationHeapAnalytics().write(
        make_config(sandbox.url), catalog(), iter(messages)
    ):
        if message.type == Type.STATE:
            accepted_when_state_out.append(len(sandbox.accepted("track")))
        output.append(message)

    states = [m.state for m in output if m.type == Type.STATE]
    assert [s.stream.stream_state.v for s in states] == [1, 2]
    assert [s.destinationStats.recordCount for s in states] == [0, 2]
    assert accepted_when_state_out[1] == 2
    accepted = sandbox.accepted("track")
    assert sorted((item["identity"], item["event"]) for item in accepted) == [
        ("u1", "signup"),
        ("u2", "login"),
    ]
    logs = [m.log.message for m in output if m.type == Type.LOG]
    assert logs[-2] == "Total Messages: 4. Total Records: 2. Total loaded: 2."
    assert logs[-1].startswith("Sync summary: ")
    assert output[-1].type == Type.LOG


def test_write_with_a_bad_config_raises_a_config_error(sandbox):
    with pytest.raises(AirbyteTracedException) as raised:
        list(DestinationHeapAnalytics().write(bad_config(sandbox.url), catalog(), iter([])))

    assert raised.value.failure_type == FailureType.config_error
    assert "'api.identity_column'" in raised.value.message
    assert sandbox.requests_log() == []


def test_write_fails_with_a_config_error_and_no_state_when_heap_answers_401(sandbox):
    sandbox.set_faults(fixed_status=401)
    output = []

    with pytest.raises(AirbyteTracedException) as raised:
        for message in DestinationHeapAnalytics().write(
            make_config(sandbox.url), catalog(), iter([record("u1", "e"), state(1)])
        ):
            output.append(message)

    assert raised.value.failure_type == FailureType.config_error
    assert "'app_id'" in raised.value.message
    assert [m for m in output if m.type == Type.STATE] == []
    assert "Total loaded: 0." in [m.log.message for m in output if m.type == Type.LOG][-2]
