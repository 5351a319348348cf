"""`discover`: the objects and operations Heap offers, for Airbyte's data-activation mapping UI.

Since 2025 Airbyte loads warehouses into SaaS tools through "data activation": the destination
answers `discover` with the objects it offers and what can be done to each, the user maps source
fields to those in the connection's mapping screen, and every stream of the configured catalog
then names its target in `destination_object_name` and `destination_sync_mode`, with records
already renamed to the operation's field names. The object names and sync modes below are the
contract with that screen (the protocol's `DestinationCatalog`, airbytehq/airbyte-protocol
`airbyte_protocol.yaml` from v0.16; docs.airbyte.com, "Data activation"): each row is one Heap
call.

airbyte-cdk 7's `Destination` knows no `discover`, and its `AirbyteMessage` has no
`destination_catalog`, so its serializer would print the message without its payload. The line
is built here from the protocol's own field names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from destination_heap_analytics.heap import limits as heap_limits

IDENTITY = {
    "type": "string",
    "maxLength": heap_limits.MAX_IDENTITY_LENGTH,
    "description": "The user's identity in Heap (case-sensitive).",
}
USER_ID = {
    "type": "string",
    "pattern": "^(0|[1-9][0-9]*)$",
    "description": "A Heap SDK user_id: an integer from 0 to 2^53 - 1, written as text.",
}
EVENT = {
    "type": "string",
    "maxLength": heap_limits.MAX_EVENT_NAME_LENGTH,
    "description": "The event name.",
}
TIMESTAMP = {
    "type": "string",
    "format": "date-time",
    "description": "When the event happened (ISO 8601); the time of loading when empty.",
}
IDEMPOTENCY_KEY = {
    "type": "string",
    "description": "Identifies the event, so Heap stores it once; a hash of the record if empty.",
}
ACCOUNT_ID = {"type": "string", "description": "The account's ID in Heap."}


@dataclass(frozen=True)
class Operation:
    """One object and sync mode the mapping screen offers, and the Heap call it makes."""

    object_name: str
    sync_mode: str
    heap_call: str
    """The `api_type` the operation loads through (see `config.ApiType`)."""
    fields: dict[str, dict[str, Any]]
    required: tuple[str, ...]
    matching_keys: tuple[tuple[str, ...], ...] | None = None
    properties_allowed: bool = False
    """`additionalProperties`: every other field is a Heap property."""

    def json(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": self.fields,
            "additionalProperties": self.properties_allowed,
        }
        if self.required:
            schema["required"] = list(self.required)
        operation: dict[str, Any] = {
            "object_name": self.object_name,
            "sync_mode": self.sync_mode,
            "json_schema": schema,
        }
        if self.matching_keys is not None:
            operation["matching_keys"] = [list(key) for key in self.matching_keys]
        return operation


OPERATIONS = (
    Operation(
        "event",
        "append",
        "track",
        {
            "identity": IDENTITY,
            "user_id": USER_ID,
            "event": EVENT,
            "timestamp": TIMESTAMP,
            "idempotency_key": IDEMPOTENCY_KEY,
        },
        required=("event",),
        properties_allowed=True,
    ),
    Operation(
        "user",
        "append_dedup",
        "add_user_properties",
        {"identity": IDENTITY},
        required=("identity",),
        matching_keys=(("identity",),),
        properties_allowed=True,
    ),
    Operation(
        "user",
        "update",
        "identify",
        {"user_id": USER_ID, "identity": IDENTITY},
        required=("user_id", "identity"),
        matching_keys=(("user_id",),),
    ),
    Operation(
        "user",
        "soft_delete",
        "delete_users",
        {"identity": IDENTITY, "user_id": USER_ID},
        required=(),
        matching_keys=(("identity",), ("user_id",)),
    ),
    Operation(
        "account",
        "append_dedup",
        "add_account_properties",
        {"account_id": ACCOUNT_ID},
        required=("account_id",),
        matching_keys=(("account_id",),),
        properties_allowed=True,
    ),
)


def destination_catalog_line() -> str:
    """The one DESTINATION_CATALOG message `discover` prints."""
    message = {
        "type": "DESTINATION_CATALOG",
        "destination_catalog": {"operations": [operation.json() for operation in OPERATIONS]},
    }
    return orjson.dumps(message).decode()


def operation_for(object_name: str, sync_mode: str) -> Operation | None:
    for operation in OPERATIONS:
        if operation.object_name == object_name and operation.sync_mode == sync_mode:
            return operation
    return None
