"""activation: the mapping of a stream the catalog maps to one of Heap's objects."""

from __future__ import annotations

import pytest
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer

from destination_heap_analytics.config.settings import ApiType
from destination_heap_analytics.mapping.activation import CatalogError, mapping_of, operation_of
from destination_heap_analytics.protocol.destination_catalog import OPERATIONS


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
    mapping = mapping_of(configured("event", "append", ["identity", "event", "timestamp", "x"]))
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
    mapping = mapping_of(configured(object_name, "append_dedup", [key, "plan"], [key]))
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
        mapping_of(stream)


def test_events_by_user_id_when_the_stream_maps_user_id_and_not_identity():
    mapping = mapping_of(configured("event", "append", ["user_id", "event", "plan"]))
    assert mapping.api_type is ApiType.TRACK
    assert mapping.identity_column is None and mapping.user_id_column.name == "user_id"
    assert mapping.exclude_columns == {"user_id", "event"}


def test_events_mapping_both_identity_and_user_id_are_a_catalog_error():
    with pytest.raises(CatalogError) as raised:
        mapping_of(configured("event", "append", ["identity", "user_id", "event"]))
    assert "maps both 'identity' and 'user_id'" in str(raised.value)


def test_events_without_either_name_both_fields_in_the_error():
    with pytest.raises(CatalogError) as raised:
        mapping_of(configured("event", "append", ["event"]))
    assert "'identity' or to 'user_id'" in str(raised.value)


def test_user_update_identifies_by_its_user_id_and_identity():
    mapping = mapping_of(configured("user", "update", ["user_id", "identity"], ["user_id"]))
    assert mapping.api_type is ApiType.IDENTIFY
    assert (mapping.identity_column.name, mapping.user_id_column.name) == ("identity", "user_id")
    assert mapping.property_columns == () and mapping.timestamp_column is None


@pytest.mark.parametrize("key", ["identity", "user_id"])
def test_user_soft_delete_deletes_by_the_field_its_primary_key_names(key):
    stream = configured("user", "soft_delete", ["identity", "user_id"], [key])
    mapping = mapping_of(stream)
    assert mapping.api_type is ApiType.DELETE_USERS
    column = mapping.identity_column or mapping.user_id_column
    assert column.name == key
    assert (mapping.identity_column is None) == (key == "user_id")
    assert mapping.property_columns == ()


def test_user_soft_delete_keyed_on_both_fields_is_a_catalog_error():
    with pytest.raises(CatalogError):
        both = ["identity", "user_id"]
        mapping_of(configured("user", "soft_delete", both, both))
