"""Record data -> one Heap item, following the column mapping.

The rules are the contract documented in the README ("Transformation rules"); each one lives in
a function here. Once per sync, `transform_codegen` compiles the mapping into one flat function
that handles the common cases inline and calls these functions for the rest. A record is only
flattened when the property columns are `*`.

Nothing here ever puts a record value into a message: an invalid record is described by the
column name and a reason only.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pendulum

from destination_heap_analytics import heap_limits
from destination_heap_analytics.config import ColumnMapping, ColumnPath
from destination_heap_analytics.transform_codegen import Rules, compile_transform

Getter = Callable[[dict], Any]
HeapItem = dict

EPOCH_MILLISECONDS_THRESHOLD = 1e11
"""Epoch numbers above this are milliseconds: 1e11 seconds is the year 5138."""

MAX_KEY = heap_limits.MAX_PROPERTY_LENGTH
MAX_VALUE = heap_limits.MAX_PROPERTY_LENGTH


class InvalidRecord(Exception):
    """The record cannot become a Heap item; `reason` names the column and rule, never a value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class TransformStats:
    """Data-quality counts the final summary reports (values were changed, not dropped silently)."""

    truncated_values: int = 0
    dropped_properties: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped_properties[reason] = self.dropped_properties.get(reason, 0) + 1


def compile_getter(column: ColumnPath) -> Getter:
    """A function returning the value at the column's dot path, or None when absent.

    Dict keys match exactly (case-sensitive); a numeric part also indexes a list. When the path
    does not resolve, a top-level key literally named like the whole path (`"a.b"`) is used, as
    0.1.0's flatten-then-lookup matched such keys too.
    """
    name = column.name
    if len(column.segments) == 1:
        return lambda data: data.get(name)
    steps = tuple(
        (segment, int(segment) if segment.isdigit() else None) for segment in column.segments
    )

    def get(data: dict) -> Any:
        value: Any = data
        for key, index in steps:
            kind = type(value)
            if kind is dict:
                value = value.get(key)
            elif kind is list and index is not None and index < len(value):
                value = value[index]
            else:
                value = None
            if value is None:
                return data.get(name)
        return value

    return get


def flatten_leaves(value: Any, prefix: str, out: dict, stats: TransformStats) -> None:
    """Every scalar leaf under `value` as `prefix.key.0.key` (lists by index, as 0.1.0).

    Nulls, empty objects and empty lists produce no key.
    """
    kind = type(value)
    if kind is dict:
        for key, child in value.items():
            flatten_leaves(child, f"{prefix}.{key}" if prefix else str(key), out, stats)
    elif kind is list:
        for index, child in enumerate(value):
            flatten_leaves(child, f"{prefix}.{index}" if prefix else str(index), out, stats)
    else:
        put_scalar(out, prefix, value, stats)


def put_scalar(out: dict, key: str, value: Any, stats: TransformStats) -> None:
    """Store a string, number or boolean property; drop what Heap cannot hold, counted."""
    if value is None:
        return
    if len(key) > MAX_KEY:
        stats.drop("property name longer than 1023 characters")
        return
    kind = type(value)
    if kind is str:
        if len(value) > MAX_VALUE:
            value = value[:MAX_VALUE]
            stats.truncated_values += 1
    elif kind is float:
        if not math.isfinite(value):
            stats.drop("property value not a finite number")
            return
    elif kind is not int and kind is not bool:
        value = str(value)
    out[key] = value


def join_list(values: list) -> str:
    """Heap's convention for arrays: one string joined with `||` (objects as compact JSON)."""
    parts = []
    for value in values:
        if value is None:
            continue
        if type(value) is str:
            parts.append(value)
        else:
            parts.append(orjson.dumps(value).decode())
    return heap_limits.ARRAY_JOINER.join(parts)


def put_value(out: dict, name: str, value: Any, stats: TransformStats) -> None:
    """An explicit column's value: objects give their leaves, lists are joined, scalars checked."""
    kind = type(value)
    if kind is dict:
        flatten_leaves(value, name, out, stats)
    elif kind is list:
        put_scalar(out, name, join_list(value), stats)
    else:
        put_scalar(out, name, value, stats)


def as_text(value: Any) -> str | None:
    """Identity, account id, event name: strings, or numbers written as text; else None."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def required_text(value: Any, column: str, max_length: int | None) -> str:
    if value is None:
        raise InvalidRecord(f"{column} is missing or null")
    text = as_text(value)
    if text is None:
        raise InvalidRecord(f"{column} is not a string or number")
    if not text or text.isspace():
        raise InvalidRecord(f"{column} is blank")
    if max_length is not None and len(text) > max_length:
        raise InvalidRecord(f"{column} is longer than {max_length} characters")
    return text


def now_iso8601() -> str:
    """The time of loading, ISO 8601 UTC, formatted as 0.1.0 did (`2022-10-26T03:06:59Z`)."""
    return pendulum.now("UTC").to_iso8601_string()


def is_iso8601_extended(text: str) -> bool:
    """`YYYY-MM-DDThh…`, parseable: sent unchanged so documented examples come out exactly."""
    if len(text) < 13 or text[4] != "-" or text[7] != "-" or text[10] != "T":
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def normalise_timestamp(value: Any) -> str | None:
    """ISO 8601 text for Heap, or None when the value cannot be read as a point in time."""
    kind = type(value)
    if kind is str:
        if is_iso8601_extended(value):
            return value
        try:
            parsed = pendulum.parse(value)
        except (ValueError, TypeError, OverflowError):
            return None
        if not isinstance(parsed, pendulum.DateTime):
            if isinstance(parsed, pendulum.Date):
                parsed = pendulum.datetime(parsed.year, parsed.month, parsed.day)
            else:
                return None
        return parsed.in_timezone("UTC").to_iso8601_string()
    if (kind is int or kind is float) and math.isfinite(value):
        seconds = value / 1000 if abs(value) > EPOCH_MILLISECONDS_THRESHOLD else value
        try:
            moment = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
        return pendulum.instance(moment).to_iso8601_string()
    return None


class RecordTransformer:
    """Turns record data into the Heap item for the configured API type.

    `transform(data, stream_key)` raises InvalidRecord; `stats` counts values changed on the way
    (truncations, dropped properties). The function itself is generated once per sync by
    `transform_codegen` from this mapping, and calls back into the rule functions of this
    module (the methods below) for everything but the common cases.
    """

    def __init__(self, mapping: ColumnMapping, now: Callable[[], str] | None = None) -> None:
        """`now` gives the timestamp of items without one (injectable for tests)."""
        self.mapping = mapping
        self._now = now or now_iso8601
        self.stats = TransformStats()
        rules = Rules(
            required_text=required_text,
            read_timestamp=self.read_timestamp,
            is_iso8601=is_iso8601_extended,
            put_value=put_value,
            flatten_leaves=flatten_leaves,
            drop_reserved_id=self.drop_reserved_id,
            compile_getter=compile_getter,
            record_hash=record_hash,
            stats=self.stats,
        )
        self.transform: Callable[[dict, bytes], HeapItem] = compile_transform(mapping, rules)

    def read_timestamp(self, value: Any, column: str | None) -> str:
        """Any timestamp but an ISO 8601 string: now when empty, else converted, else invalid."""
        if value is None or value == "":
            return self._now()
        normalised = normalise_timestamp(value)
        if normalised is None:
            raise InvalidRecord(f"{column} is not a date-time (ISO 8601, date text or epoch)")
        return normalised

    def drop_reserved_id(self, properties: dict) -> None:
        """Heap rejects a user property named `id` in any casing; drop it instead of the user."""
        for key in [k for k in properties if k.lower() == "id"]:
            del properties[key]
            self.stats.drop("user property named 'id' (reserved by Heap)")


def record_hash(data: dict, stream_key: bytes) -> str:
    """A stable idempotency key: the same record of the same stream always gives the same key.

    Canonical JSON (sorted keys, orjson's number formatting) so key order in the source does
    not matter; 32 hex characters (128 bits) of SHA-256.
    """
    canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(stream_key + canonical).hexdigest()[:32]


def stream_key(namespace: str | None, name: str) -> bytes:
    """The stream part of the idempotency hash; namespaced streams of one name differ."""
    return orjson.dumps([namespace, name]) + b"\n"
