"""Streams mapped in Airbyte's mapping screen (data activation): the catalog names the mapping.

On a data-activation connection every configured stream names its target:
`destination_object_name` and `destination_sync_mode` pick one of the operations `discover`
offers (destination_catalog.py), `primary_key` names the matching key, and the platform renames
each record's fields to the operation's field names before they reach the destination. Such a
stream needs no `streams` entry and no top-level `api`: its mapping is derived here, once, from
the operation and the stream's schema. For events, users and accounts, every field that is not
mapped to one of the operation's fields (those the stream's schema declares, and the required
ones) becomes a property, flattened and checked by the same rules as
`property_columns: "*"`; identify (`user` / `update`) and user deletion (`user` /
`soft_delete`, by the field the primary key names) send no properties.

A catalog can come from anywhere, so what the platform validates is validated again: an unknown
object, a sync mode the object does not offer, or a `primary_key` that is none of its matching
keys end `write` at its start with a CatalogError that names the stream and says what is
allowed; a `streams` entry for the same stream is a ConfigError naming the entry.
"""

from __future__ import annotations

from airbyte_cdk.models import ConfiguredAirbyteStream

from destination_heap_analytics.config.settings import (
    ApiType,
    ColumnMapping,
    ColumnPath,
    stream_label,
)
from destination_heap_analytics.protocol.destination_catalog import (
    OPERATIONS,
    Operation,
    operation_for,
)


class CatalogError(ValueError):
    """The configured catalog asks for something Heap's objects do not offer; the message names
    the stream and what is allowed, never a value of a record."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"The configured catalog cannot be loaded: {problem}")


def activated_stream(configured: ConfiguredAirbyteStream) -> bool:
    return bool(configured.destination_object_name)


def operation_of(configured: ConfiguredAirbyteStream) -> Operation:
    """The operation a catalog stream targets, or a CatalogError saying what is allowed."""
    label = stream_label((configured.stream.namespace, configured.stream.name))
    object_name = configured.destination_object_name
    sync_mode = _sync_mode(configured)
    offered = [op for op in OPERATIONS if op.object_name == object_name]
    if not offered:
        names = ", ".join(dict.fromkeys(op.object_name for op in OPERATIONS))
        raise CatalogError(
            f"stream '{label}' names the destination object '{object_name}'; Heap offers {names}"
        )
    operation = operation_for(object_name, sync_mode)
    if operation is None:
        modes = ", ".join(op.sync_mode for op in offered)
        raise CatalogError(
            f"stream '{label}' loads the object '{object_name}' with the sync mode "
            f"'{sync_mode}'; that object offers {modes}"
        )
    _check_primary_key(configured, operation, label)
    return operation


def _check_primary_key(configured: ConfiguredAirbyteStream, op: Operation, label: str) -> None:
    if op.matching_keys is None:
        return
    chosen = _primary_key_fields(configured)
    keys = [set(key) for key in op.matching_keys]
    if chosen not in keys:
        allowed = " or ".join("[" + ", ".join(sorted(key)) + "]" for key in keys)
        raise CatalogError(
            f"stream '{label}' matches the object '{op.object_name}' ({op.sync_mode}) on "
            f"its primary key; it must be {allowed}"
        )


def mapping_of(configured: ConfiguredAirbyteStream) -> ColumnMapping:
    """The mapping of an activated stream: the operation's fields where the table says, every
    other field a property. (A `streams` entry for the same stream is refused by
    `streams.StreamMatcher`, which owns which entry maps which stream.)"""
    operation = operation_of(configured)
    label = stream_label((configured.stream.namespace, configured.stream.name))
    declared = _schema_fields(configured) & set(operation.fields)
    mapped = frozenset(declared | set(operation.required))
    call = ApiType(operation.heap_call)
    if call == ApiType.TRACK:
        return _events(mapped, label)
    if call == ApiType.ADD_USER_PROPERTIES:
        return ColumnMapping(
            api_type=call,
            property_columns=None,
            identity_column=_column("identity"),
            exclude_columns=mapped,
        )
    if call == ApiType.ADD_ACCOUNT_PROPERTIES:
        return ColumnMapping(
            api_type=call,
            property_columns=None,
            account_id_column=_column("account_id"),
            exclude_columns=mapped,
        )
    if call == ApiType.IDENTIFY:  # `user` / `update`: the events of `user_id` move to `identity`
        return ColumnMapping(
            api_type=call,
            property_columns=(),
            identity_column=_column("identity"),
            user_id_column=_column("user_id"),
        )
    return _deletions(_primary_key_fields(configured))


def _events(mapped: frozenset[str], label: str) -> ColumnMapping:
    """An event names its user by `identity` or by `user_id`, never both (Heap: "both cannot
    be provided at the same time")."""
    if "identity" in mapped and "user_id" in mapped:
        raise CatalogError(
            f"stream '{label}' maps both 'identity' and 'user_id' for its events; Heap takes "
            "one of the two, so map exactly one"
        )
    if "identity" not in mapped and "user_id" not in mapped:
        raise CatalogError(
            f"stream '{label}' loads events without an identity; map a field to 'identity' "
            "or to 'user_id'"
        )
    return ColumnMapping(
        api_type=ApiType.TRACK,
        property_columns=None,
        identity_column=_column("identity") if "identity" in mapped else None,
        user_id_column=_column("user_id") if "user_id" in mapped else None,
        event_column=_column("event"),
        timestamp_column=_column("timestamp") if "timestamp" in mapped else None,
        idempotency_key_column=_column("idempotency_key") if "idempotency_key" in mapped else None,
        exclude_columns=mapped,
    )


def _deletions(key: frozenset[str]) -> ColumnMapping:
    """`user` / `soft_delete`: each record deletes the user its primary key names, by
    `identity` or by `user_id` (operation_of has checked that the key is one of the two)."""
    (name,) = key
    column = _column(name)
    return ColumnMapping(
        api_type=ApiType.DELETE_USERS,
        property_columns=(),
        identity_column=column if name == "identity" else None,
        user_id_column=column if name == "user_id" else None,
    )


def _primary_key_fields(configured: ConfiguredAirbyteStream) -> frozenset[str]:
    return frozenset(field for path in configured.primary_key or [] for field in path)


def _schema_fields(configured: ConfiguredAirbyteStream) -> set[str]:
    """The top-level fields the platform says the renamed records carry."""
    schema = configured.stream.json_schema
    properties = schema.get("properties") if isinstance(schema, dict) else None
    return set(properties) if isinstance(properties, dict) else set()


def _sync_mode(configured: ConfiguredAirbyteStream) -> str:
    mode = configured.destination_sync_mode
    return str(getattr(mode, "value", mode))


def _column(name: str) -> ColumnPath:
    return ColumnPath(name, (name,))
