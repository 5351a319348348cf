"""How the destination reports errors: every failure becomes a TRACE the user can act on."""

from __future__ import annotations

import logging

from airbyte_cdk.models import FailureType, Status
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_heap_analytics.airbyte.destination import (
    DestinationHeapAnalytics,
    as_traced_exception,
)
from destination_heap_analytics.delivery.rejection_guard import HeapRefusesMost
from destination_heap_analytics.delivery.retry import RetriesExhausted
from destination_heap_analytics.heap.client import HeapConfigurationError, HeapTransientError


def test_configuration_error_becomes_a_config_error_naming_the_field():
    traced = as_traced_exception(HeapConfigurationError("base_url", "Heap answered HTTP 404"))

    assert traced.failure_type == FailureType.config_error
    assert "'base_url'" in traced.message
    assert "Heap answered HTTP 404" in traced.message


def test_retries_exhausted_becomes_a_transient_error():
    error = RetriesExhausted(HeapTransientError("HTTP 503 from Heap"), attempts=9, elapsed=600)

    traced = as_traced_exception(error)

    assert traced.failure_type == FailureType.transient_error
    assert "HTTP 503 from Heap" in traced.message


def fail_with(value: str) -> None:
    raise ValueError(value)


def test_unexpected_error_becomes_a_system_error_without_its_message():
    secret = "secret" + "-value"  # built so that no source line in the traceback shows it
    try:
        fail_with(secret)
    except ValueError as error:
        traced = as_traced_exception(error)

    assert traced.failure_type == FailureType.system_error
    assert "ValueError" in traced.message
    assert secret not in traced.message
    assert secret not in traced.internal_message
    assert "fail_with" in traced.internal_message


def test_a_traced_exception_passes_through_unchanged():
    original = AirbyteTracedException(message="m", failure_type=FailureType.config_error)

    assert as_traced_exception(original) is original


def test_heap_refusing_most_records_becomes_a_config_error_that_keeps_states_honest():
    traced = as_traced_exception(HeapRefusesMost(10, 10, "HTTP 400: events properties"))
    assert traced.failure_type == FailureType.config_error
    assert traced.message.startswith("Heap refused 10 of the last 10 records it judged")
    assert "'api' mapping and 'app_id'" in traced.message


def test_check_in_a_dry_run_validates_without_sending_anything():
    config = {
        "app_id": "11",
        "base_url": "https://heap-host-that-does-not-exist.invalid",
        "dry_run": True,
        "api": {
            "api_type": "track",
            "identity_column": "u",
            "event_name": "E",
            "property_columns": "*",
        },
    }
    status = DestinationHeapAnalytics().check(logging.getLogger("test"), config)
    assert status.status == Status.SUCCEEDED
    assert (
        status.message
        == "Dry run: the configuration is valid; no preflight event was sent to Heap."
    )
    broken = {**config, "api": {**config["api"], "identity_column": ""}}
    assert (
        DestinationHeapAnalytics().check(logging.getLogger("test"), broken).status == Status.FAILED
    )
