"""Parse the raw Airbyte config once into a small, immutable, typed object.

Everything downstream receives a `HeapConfig`, never the raw dict, so a bad config is reported
once, here, with the name of the field to fix, and the caller's dict is never mutated (0.1.0 turned
`property_columns` into a list in place, so a second `write()` with the same dict failed).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from destination_heap_analytics import heap_limits

DEFAULT_BATCH_SIZE = heap_limits.MAX_ITEMS_PER_BULK_REQUEST
MAX_CONCURRENT_REQUESTS_LIMIT = 16
DEFAULT_MAX_CONCURRENT_REQUESTS = 4
DEFAULT_MAX_RETRY_SECONDS = 600


StreamId = tuple[str | None, str]
"""A stream as Airbyte names it: (namespace or None, name)."""


class ConfigError(ValueError):
    """A config value the user must fix; the message names the field and never echoes secrets."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"Invalid configuration field '{field}': {problem}")
        self.field = field


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
                field, f"column '{name}' has an empty part; write dot paths like 'a.b.0.c'"
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
    batch_size: int = DEFAULT_BATCH_SIZE
    max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS
    pacing: Pacing = Pacing(per_app=None, per_identity=None)
    max_retry_seconds: float = DEFAULT_MAX_RETRY_SECONDS

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
    """Validate every field and build the typed config; raises ConfigError naming the field."""
    if not isinstance(raw, Mapping):
        raise ConfigError("config", "must be a JSON object")
    mapping = _parse_mapping(raw.get("api"))
    batch_size = _parse_int(raw, "batch_size", DEFAULT_BATCH_SIZE, 1, DEFAULT_BATCH_SIZE)
    return HeapConfig(
        app_id=_parse_app_id(raw.get("app_id")),
        base_url=parse_base_url(raw.get("base_url", heap_limits.US_BASE_URL)),
        mapping=mapping,
        batch_size=batch_size,
        max_concurrent_requests=_parse_int(
            raw,
            "max_concurrent_requests",
            DEFAULT_MAX_CONCURRENT_REQUESTS,
            1,
            MAX_CONCURRENT_REQUESTS_LIMIT,
        ),
        pacing=_parse_pacing(raw, mapping.api_type, bulk=batch_size > 1),
        max_retry_seconds=_parse_int(
            raw, "max_retry_seconds", DEFAULT_MAX_RETRY_SECONDS, 0, 24 * 3600
        ),
    )


def _parse_app_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError("app_id", "is required: the Environment ID of your Heap project")
    app_id = str(value).strip()
    if not app_id:
        raise ConfigError("app_id", "is empty: set the Environment ID of your Heap project")
    return app_id


LOOPBACK_NAMES = frozenset({"localhost"})


def parse_base_url(value: Any) -> str:
    """https only, so the app_id (Heap's only credential) never travels in clear text.

    Plain http is allowed for loopback hosts alone, where the local Heap sandbox runs in tests.
    """
    if value is None or value == "":
        return heap_limits.US_BASE_URL
    if not isinstance(value, str):
        raise ConfigError("base_url", "must be a string such as https://heapanalytics.com")
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "base_url",
            "must be a full URL such as https://heapanalytics.com or https://c.eu.heap-api.com",
        )
    if parts.query or parts.fragment:
        raise ConfigError("base_url", "must not contain a query string or fragment")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            "base_url",
            "must use https:// (plain http is only allowed for localhost / 127.0.0.1 / ::1)",
        )
    return url


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_API_FIELDS = {
    ApiType.TRACK: ("identity_column", "event_column"),
    ApiType.ADD_USER_PROPERTIES: ("identity_column",),
    ApiType.ADD_ACCOUNT_PROPERTIES: ("account_id_column",),
}


def _parse_mapping(api: Any) -> ColumnMapping:
    if not isinstance(api, Mapping):
        raise ConfigError("api", "is required: choose an API type (track, add_user_properties…)")
    raw_type = api.get("api_type")
    try:
        api_type = ApiType(raw_type)
    except ValueError:
        allowed = ", ".join(t.value for t in ApiType)
        raise ConfigError("api.api_type", f"must be one of: {allowed}") from None
    columns: dict[str, ColumnPath | None] = {
        name: _required_column(api, name) for name in _API_FIELDS[api_type]
    }
    if api_type is ApiType.TRACK:
        columns["timestamp_column"] = _optional_column(api, "timestamp_column")
        columns["idempotency_key_column"] = _optional_column(api, "idempotency_key_column")
    return ColumnMapping(
        api_type=api_type,
        property_columns=_parse_property_columns(api.get("property_columns", "*")),
        **columns,
    )


def _required_column(api: Mapping[str, Any], name: str) -> ColumnPath:
    column = _optional_column(api, name)
    if column is None:
        raise ConfigError(f"api.{name}", "is required for this API type")
    return column


def _optional_column(api: Mapping[str, Any], name: str) -> ColumnPath | None:
    value = api.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ConfigError(f"api.{name}", "must be a column name (a string)")
    if "," in value:
        raise ConfigError(f"api.{name}", "takes a single column, not a comma-separated list")
    return ColumnPath.parse(value, f"api.{name}")


def _parse_property_columns(value: Any) -> tuple[ColumnPath, ...] | None:
    field = "api.property_columns"
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(field, "must be a comma-separated string of column names, or *")
    names = [name.strip() for name in value.split(",")]
    names = [name for name in names if name]
    if not names or names == ["*"]:
        return None
    if "*" in names:
        raise ConfigError(field, "use * alone (all columns) or a list of columns, not both")
    unique = list(dict.fromkeys(names))
    return tuple(ColumnPath.parse(name, field) for name in unique)


def _parse_int(raw: Mapping[str, Any], field: str, default: int, low: int, high: int) -> int:
    value = raw.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field, f"must be a whole number from {low} to {high}")
    if not low <= value <= high:
        raise ConfigError(field, f"must be from {low} to {high}, got {value}")
    return value


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
        minute = _parse_int(raw, "max_events_per_minute", 0, 0, 10_000_000)
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
