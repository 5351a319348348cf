"""Parse the raw Airbyte config once into a small, immutable, typed object.

Everything downstream receives a `HeapConfig`, never the raw dict, so a bad config is reported
once, here, with the name of the field to fix, and the caller's dict is never mutated (0.1.0 turned
`property_columns` into a list in place, so a second `write()` with the same dict failed).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any
from urllib.parse import SplitResult, urlsplit

from destination_heap_analytics import heap_limits
from destination_heap_analytics.config_schema import (
    ConfigError,
    check_against_spec,
    chosen_option,
    connection_specification,
    spec_default,
    with_spec_defaults,
)

StreamId = tuple[str | None, str]
"""A stream as Airbyte names it: (namespace or None, name)."""


class ApiType(StrEnum):
    TRACK = "track"
    ADD_USER_PROPERTIES = "add_user_properties"
    ADD_ACCOUNT_PROPERTIES = "add_account_properties"

    @property
    def bulk_key(self) -> str:
        """The array key that turns a request body into Heap's bulk form."""
        return _BULK_KEYS[self]


_BULK_KEYS = {
    ApiType.TRACK: "events",
    ApiType.ADD_USER_PROPERTIES: "users",
    ApiType.ADD_ACCOUNT_PROPERTIES: "accounts",
}


@dataclass(frozen=True)
class ColumnPath:
    """A column as the user wrote it (`identities.connection`) and its compiled path segments."""

    name: str
    segments: tuple[str, ...]

    @classmethod
    def parse(cls, raw: str, field: str) -> ColumnPath:
        name = raw.strip()
        if not name:
            raise ConfigError(field, "a column name is empty")
        segments = tuple(name.split("."))
        if any(not segment for segment in segments):
            raise ConfigError(
                field, "a column name has an empty part; write dot paths like 'a.b.0.c'"
            )
        return cls(name=name, segments=segments)


@dataclass(frozen=True)
class ColumnMapping:
    """Which record columns feed which Heap fields; `property_columns=None` means every leaf."""

    api_type: ApiType
    property_columns: tuple[ColumnPath, ...] | None
    identity_column: ColumnPath | None = None
    event_column: ColumnPath | None = None
    timestamp_column: ColumnPath | None = None
    account_id_column: ColumnPath | None = None
    idempotency_key_column: ColumnPath | None = None

    def configured_columns(self) -> tuple[ColumnPath, ...]:
        """Every explicitly named column, for the 'column never seen' report."""
        singles = (
            self.identity_column,
            self.event_column,
            self.timestamp_column,
            self.account_id_column,
            self.idempotency_key_column,
        )
        return tuple(self.property_columns or ()) + tuple(c for c in singles if c is not None)


@dataclass(frozen=True)
class RateLimit:
    """At most `items` items in any rolling window of `window_seconds`."""

    items: int
    window_seconds: float


@dataclass(frozen=True)
class Pacing:
    """Client-side pacing; both None means no pacing at all."""

    per_app: RateLimit | None
    per_identity: RateLimit | None
    time_scale: float = 1.0

    @property
    def enabled(self) -> bool:
        return self.per_app is not None or self.per_identity is not None


@dataclass(frozen=True)
class HeapConfig:
    app_id: str
    base_url: str
    mapping: ColumnMapping
    batch_size: int
    max_concurrent_requests: int
    pacing: Pacing
    max_retry_seconds: float

    @property
    def api_type(self) -> ApiType:
        return self.mapping.api_type

    def mapping_for(self, stream: StreamId) -> ColumnMapping | None:
        """The mapping of a stream of the catalog; None when it has none."""
        return self.mapping

    def pacing_for(self, api_type: ApiType) -> Pacing:
        return self.pacing

    @property
    def endpoint_url(self) -> str:
        return endpoint_url(self.base_url, self.api_type)

    @property
    def uses_bulk_form(self) -> bool:
        """batch_size 1 keeps 0.1.0's single-item body; anything larger uses Heap's bulk form."""
        return self.batch_size > 1


def endpoint_url(base_url: str, api_type: ApiType) -> str:
    """`{base_url}/api/{api_type}`; unlike 0.1.0's urljoin, a path prefix in base_url is kept."""
    return f"{base_url}/api/{api_type.value}"


def parse_config(raw: Mapping[str, Any]) -> HeapConfig:
    """Validate every field and build the typed config; raises ConfigError naming the field.

    Types, ranges, required fields and defaults come from spec.json alone (config_schema.py);
    what follows are the rules a JSON schema cannot state: dot paths, https, non-blank values.
    """
    config = with_spec_defaults(raw)
    check_against_spec(config)
    mapping = _parse_mapping(config["api"])
    batch_size = int(config["batch_size"])
    return HeapConfig(
        app_id=_parse_app_id(config["app_id"]),
        base_url=parse_base_url(config["base_url"]),
        mapping=mapping,
        batch_size=batch_size,
        max_concurrent_requests=int(config["max_concurrent_requests"]),
        pacing=_parse_pacing(config, mapping.api_type, bulk=batch_size > 1),
        max_retry_seconds=int(config["max_retry_seconds"]),
    )


def _parse_app_id(value: str) -> str:
    app_id = value.strip()
    if not app_id:
        raise ConfigError("app_id", "is empty: set the Environment ID of your Heap project")
    return app_id


LOOPBACK_NAMES = frozenset({"localhost"})


def parse_base_url(value: str) -> str:
    """https only, so the app_id (Heap's only credential) never travels in clear text.

    Plain http is allowed for loopback hosts alone, where the local Heap sandbox runs in tests.
    An empty value means the spec's default, as a cleared field in a form does.
    """
    url = value.strip().rstrip("/")
    if not url:
        return spec_default("base_url")
    parts = _split_url(url)
    host = parts.hostname if parts is not None else None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ConfigError(
            "base_url",
            "must be a full URL such as https://heapanalytics.com or https://c.eu.heap-api.com",
        )
    if parts.query or parts.fragment:
        raise ConfigError("base_url", "must not contain a query string or fragment")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigError(
            "base_url",
            "must use https:// (plain http is only allowed for localhost / 127.0.0.1 / ::1)",
        )
    return url


def _split_url(url: str) -> SplitResult | None:
    try:
        return urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


SINGLE_COLUMN_FIELDS = frozenset(field.name for field in fields(ColumnMapping)) - {
    "api_type",
    "property_columns",
}
"""The `api` settings that name one column; which of them an API type takes, and which it
requires, is read from that API type's option in spec.json."""


def _parse_mapping(api: Mapping[str, Any]) -> ColumnMapping:
    api_type = ApiType(api["api_type"])
    option = chosen_option(connection_specification()["properties"]["api"], api)
    columns = {
        name: _parse_single_column(api, name, required=name in option["required"])
        for name in option["properties"]
        if name in SINGLE_COLUMN_FIELDS
    }
    return ColumnMapping(
        api_type=api_type,
        property_columns=_parse_property_columns(api["property_columns"]),
        **columns,
    )


def _parse_single_column(api: Mapping[str, Any], name: str, required: bool) -> ColumnPath | None:
    field = f"api.{name}"
    value = api.get(name, "")
    if not value.strip():
        if required:
            raise ConfigError(field, "is required for this API type")
        return None
    if "," in value:
        raise ConfigError(field, "takes a single column, not a comma-separated list")
    return ColumnPath.parse(value, field)


def _parse_property_columns(value: str) -> tuple[ColumnPath, ...] | None:
    field = "api.property_columns"
    names = [name.strip() for name in value.split(",")]
    names = [name for name in names if name]
    if not names or names == ["*"]:
        return None
    if "*" in names:
        raise ConfigError(field, "use * alone (all columns) or a list of columns, not both")
    unique = list(dict.fromkeys(names))
    return tuple(ColumnPath.parse(name, field) for name in unique)


def _parse_pacing(raw: Mapping[str, Any], api_type: ApiType, bulk: bool) -> Pacing:
    """Heap's documented limits by default; max_events_per_minute overrides the per-app one.

    0 turns client-side pacing off entirely (per identity too), for users whose Heap contract
    raises the limits.
    """
    per_identity = _documented_identity_limit(api_type, bulk)
    value = raw.get("max_events_per_minute")
    if value is None:
        per_app = _documented_app_limit(api_type, bulk)
    else:
        minute = int(value)
        if minute == 0:
            return Pacing(per_app=None, per_identity=None)
        per_app = RateLimit(minute, 60.0)
    scale = pacing_time_scale()
    return Pacing(
        per_app=_scaled(per_app, scale), per_identity=_scaled(per_identity, scale), time_scale=scale
    )


PACING_TIME_SCALE_ENV = "DESTINATION_HEAP_ANALYTICS_PACING_TIME_SCALE"
"""For the benchmark and tests only: shrinks every rate-limit window (0.1 makes Heap's minute
six seconds) so pacing can be measured against a sandbox enforcing the same scaled limit."""


def pacing_time_scale() -> float:
    raw = os.environ.get(PACING_TIME_SCALE_ENV)
    if raw is None or raw == "":
        return 1.0
    try:
        scale = float(raw)
    except ValueError:
        scale = 0.0
    if not 0 < scale <= 1:
        raise ConfigError(PACING_TIME_SCALE_ENV, "must be a number above 0 and at most 1")
    return scale


def _scaled(limit: RateLimit | None, scale: float) -> RateLimit | None:
    if limit is None or scale == 1.0:
        return limit
    return RateLimit(limit.items, limit.window_seconds * scale)


def _documented_app_limit(api_type: ApiType, bulk: bool) -> RateLimit | None:
    if api_type is ApiType.TRACK and bulk:
        return RateLimit(*heap_limits.TRACK_BULK_LIMIT_PER_APP)
    return None


def _documented_identity_limit(api_type: ApiType, bulk: bool) -> RateLimit | None:
    if api_type is ApiType.ADD_ACCOUNT_PROPERTIES:
        return None
    if not bulk:
        return RateLimit(*heap_limits.SINGLE_REQUEST_LIMIT_PER_IDENTITY)
    if api_type is ApiType.TRACK:
        return RateLimit(*heap_limits.TRACK_BULK_LIMIT_PER_IDENTITY)
    return None
