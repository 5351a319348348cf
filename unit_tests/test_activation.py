"""activation: the mapping of a stream the catalog maps to one of Heap's objects."""

from __future__ import annotations

import pytest
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer

from destination_heap_analytics.activation import CatalogError, mapping_of, operation_of
from destination_heap_analytics.config import ApiType, ConfigError, parse_config
from destination_heap_analytics.destination_catalog import OPERATIONS

CONFIG = parse_config({"app_id": "11", "base_url": "https://heap.test"}, require_mapping=False)


def configured(object_name, sync_mode, fields, key=None):
    stream = {
        "stream": {
            "name": "s",
            "json_schema": {"type": "object", "properties": {f: {} for f in fields}},
            "supported_sync_modes": ["full_refresh"],
        },
        "sync_mode": "full_refresh",
        "destination_sync_mode": sync_mode,
        "destination_object_name": object_name,
    }
    if key is not None:
        stream["primary_key"] = [[k] for k in key]
    return ConfiguredAirbyteCatalogSerializer.load({"streams": [stream]}).streams[0]


def test_events_take_their_fields_and_send_everything_else_as_properties():
    mapping = mapping_of(
        configured("event", "append", ["identity", "event", "timestamp", "x"]), CONFIG
    )
    assert mapping.api_type is ApiType.TRACK
    assert (mapping.identity_column.name, mapping.event_column.name) == ("identity", "event")
    assert mapping.timestamp_column.name == "timestamp" and mapping.idempotency_key_column is None
    assert mapping.property_columns is None
    assert mapping.exclude_columns == {"identity", "event", "timestamp"}


@pytest.mark.parametrize(
    "object_name, api_type, key",
    [
        ("user", ApiType.ADD_USER_PROPERTIES, "identity"),
        ("account", ApiType.ADD_ACCOUNT_PROPERTIES, "account_id"),
    ],
)
def test_user_and_account_properties_key_on_their_matching_key(object_name, api_type, key):
    mapping = mapping_of(configured(object_name, "append_dedup", [key, "plan"], [key]), CONFIG)
    assert mapping.api_type is api_type
    assert mapping.exclude_columns == {key}


def test_every_operation_of_discover_is_known_here():
    for operation in OPERATIONS:
        key = list(operation.matching_keys[0]) if operation.matching_keys else None
        assert (
            operation_of(
                configured(operation.object_name, operation.sync_mode, list(operation.fields), key)
            )
            is operation
        )


@pytest.mark.parametrize(
    "stream",
    [
        configured("company", "append", ["x"]),
        configured("account", "append", ["account_id"]),
        configured("user", "append_dedup", ["identity"], ["email"]),
        configured("user", "append_dedup", ["identity"]),
        configured("event", "append", ["event"]),
    ],
)
def test_what_heap_does_not_offer_is_a_catalog_error(stream):
    with pytest.raises(CatalogError):
        mapping_of(stream, CONFIG)


def test_a_streams_entry_for_an_activated_stream_is_a_config_error():
    config = parse_config(
        {
            "app_id": "11",
            "base_url": "https://heap.test",
            "streams": [
                {
                    "stream": "s",
                    "api": {
                        "api_type": "add_user_properties",
                        "identity_column": "e",
                        "property_columns": "*",
                    },
                }
            ],
        }
    )
    with pytest.raises(ConfigError) as raised:
        mapping_of(configured("user", "append_dedup", ["identity"], ["identity"]), config)
    assert raised.value.field == "streams[0].stream"
