"""Builders the unit tests share: configs, catalogs, records and states, each written once."""

from __future__ import annotations

import json

from airbyte_cdk.models import (
    AirbyteMessage,
    AirbyteMessageSerializer,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteCatalogSerializer,
)

from destination_heap_analytics.config.settings import HeapConfig, parse_config
from destination_heap_analytics.protocol.state_message import EmittedState, StateMessage

TRACK_API = {
    "api_type": "track",
    "identity_column": "user",
    "event_column": "event",
    "property_columns": "*",
}

StreamName = str | tuple[str | None, str]
"""`"users"`, or `(namespace, "users")`."""


def heap_config(**overrides: object) -> HeapConfig:
    """A parsed config: track by default, pacing off, Heap at an address nothing listens on."""
    raw = {"app_id": "11", "base_url": "https://heap.test", "api": TRACK_API}
    return parse_config({**raw, "max_events_per_minute": 0, **overrides})


def make_catalog(*streams: StreamName) -> ConfiguredAirbyteCatalog:
    def stream(name: StreamName) -> dict:
        namespace, name = name if isinstance(name, tuple) else (None, name)
        described = {
            "name": name,
            "json_schema": {"type": "object"},
            "supported_sync_modes": ["full_refresh"],
        }
        if namespace is not None:
            described["namespace"] = namespace
        return {"stream": described, "sync_mode": "full_refresh", "destination_sync_mode": "append"}

    return ConfiguredAirbyteCatalogSerializer.load({"streams": [stream(s) for s in streams]})


def record(user: str, stream: str = "users", **data: object) -> AirbyteMessage:
    """A record of `stream` with a `user` and an `event` column (the TRACK_API mapping's)."""
    body = {"stream": stream, "data": {"user": user, "event": "e", **data}, "emitted_at": 1}
    return AirbyteMessageSerializer.load({"type": "RECORD", "record": body})


def state(payload: dict) -> StateMessage:
    """A STATE line as the reader gives it to the writer."""
    parsed = StateMessage.parse(json.dumps({"type": "STATE", "state": payload}))
    assert parsed is not None
    return parsed


def stream_state(name: str, value: int = 0, namespace: str | None = None) -> StateMessage:
    descriptor = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    return state(
        {
            "type": "STREAM",
            "stream": {"stream_descriptor": descriptor, "stream_state": {"v": value}},
        }
    )


def global_state(value: int = 0) -> StateMessage:
    return state({"type": "GLOBAL", "global": {"shared_state": {"v": value}, "stream_states": []}})


def legacy_state(value: int = 0) -> StateMessage:
    return state({"data": {"v": value}})


def emitted(line: EmittedState) -> dict:
    """An emitted state's JSON, read exactly (big integers stay integers)."""
    return json.loads(line.line)["state"]


def state_value(line: EmittedState) -> int:
    """The `v` a builder's state carried, whatever its type."""
    payload = emitted(line)
    if payload.get("type") == "STREAM":
        return payload["stream"]["stream_state"]["v"]
    if payload.get("type") == "GLOBAL":
        return payload["global"]["shared_state"]["v"]
    return payload["data"]["v"]
