"""Record data -> one Heap item, following the column mapping.

The rules are the contract documented in the README ("Transformation rules"); each one lives in
a function here, and the fields of each API type's item in one table, `ITEM_SHAPES`. Once per
stream, `compile_transform` reads that table and the mapping into a few closures and tuples, so
each record costs calls to the rule functions and nothing else: no rule is restated anywhere.
A record is only flattened when the property columns are `*`.

Nothing here ever puts a record value into a message: an invalid record is described by the
column name and a reason only.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from functools import cache
from typing import Any

import orjson
import pendulum

from destination_heap_analytics.config.settings import (
    ApiType,
    ColumnMapping,
    ColumnPath,
    PropertyColumn,
)
from destination_heap_analytics.counters import TransformStats
from destination_heap_analytics.heap import limits as heap_limits
from destination_heap_analytics.json_numbers import RawNumber

Getter = Callable[[dict], Any]
HeapItem = dict

EPOCH_MILLISECONDS_THRESHOLD = 1e11
"""Epoch numbers above this are milliseconds: 1e11 seconds is the year 5138."""

MAX_KEY = heap_limits.MAX_PROPERTY_LENGTH
MAX_VALUE = heap_limits.MAX_PROPERTY_LENGTH
MAX_EXACT_INTEGER = heap_limits.MAX_EXACT_INTEGER
MAX_TEXT_BITS = (10**MAX_VALUE - 1).bit_length()
"""Bits of the largest integer of MAX_VALUE digits: any integer with more bits has more digits
than Heap takes in a value, so it is refused without being written out (3399)."""
MAX_NESTING_DEPTH = 254
"""Containers on one path of a record that the connector will read through: orjson's own
serialisation limit, applied to flattening too, so every path to the same record agrees."""

TOO_DEEP = f"record nested more than {MAX_NESTING_DEPTH} levels deep"
UNWRITABLE_NUMBER = "record holds a number that cannot be written as JSON"
NUMBER_TOO_LONG = f"number longer than {MAX_VALUE} characters as text"
EMPTY_NAME = "property name with an empty part"
COLLIDING_NAME = "property names that collide after flattening (fewest parts kept)"
ENCLOSED_COLLISION = "property names two nested columns give different values (outer column kept)"
NAME_TOO_LONG = f"property name longer than {MAX_KEY} characters"
NOT_FINITE = "property value not a finite number"
RESERVED_ID = "user property named 'id' (reserved by Heap)"


class InvalidRecord(Exception):
    """The record cannot become a Heap item; `reason` names the column and rule, never a value.

    `column` is the mapped column whose value broke the rule (`reason` starts with it), None
    for a rule about the whole record (nested too deep); the bucket of rejected records keeps
    the two apart."""

    def __init__(self, reason: str, column: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.column = column

    @property
    def rule(self) -> str:
        """The rule without the column: `is missing or null`."""
        if self.column is None:
            return self.reason
        return self.reason.removeprefix(self.column).lstrip()


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


# -- properties -----------------------------------------------------------------------------------
NOTHING_EXCLUDED: frozenset[str] = frozenset()


def flatten_value(
    value: Any,
    path: str,
    out: dict,
    stats: TransformStats,
    depth: int,
    excluded: frozenset[str] = NOTHING_EXCLUDED,
    name: str | None = None,
) -> None:
    """Every scalar leaf under `value` (found at record `path`) as a property `name.key.0.key`
    (lists by index, as 0.1.0). `depth` counts the containers around `value`, the record itself
    being 1; `name` replaces `path` at the front of the property names (`identities as ident`).

    Nulls, empty objects and empty lists give no property. A key that is empty, or has an empty
    part between dots (`a.`), is dropped with everything under it, counted; so is everything under
    an `excluded` record path, silently (the user asked for it). When two paths give one name
    (`{"a.b": 1, "a": {"b": 2}}`), the path with the fewest parts wins, then the first in sorted
    order: the same winner whatever the key order of the source.
    """
    leaves: dict = {}
    collect_leaves(value, path, leaves, stats, depth, excluded)
    if COLLIDED in leaves:
        leaves = resolve_collisions(value, path, stats, excluded)
    if name is None or name == path:
        for key, leaf in leaves.items():
            put_value(out, key, leaf, stats)
    else:
        cut = len(path)
        for key, leaf in leaves.items():
            put_value(out, name + key[cut:], leaf, stats)


def has_empty_part(name: str) -> bool:
    """`.a`, `a.`, `a..b`: a dotted name with nothing between two dots."""
    return name[0] == "." or name[-1] == "." or ".." in name


def is_excluded(path: str, excluded: frozenset[str]) -> bool:
    """`path` is an excluded record path or under one (also through keys that contain dots)."""
    if path in excluded:
        return True
    return "." in path and path.startswith(excluded_prefixes(excluded))


@cache
def excluded_prefixes(excluded: frozenset[str]) -> tuple[str, ...]:
    """`base.` for each excluded path, built once per mapping rather than at every node of
    every record (streams from Airbyte's mapping screen always exclude their mapped fields)."""
    return tuple(f"{base}." for base in excluded)


COLLIDED = object()
"""Key `collect_leaves` adds to its output when two paths gave one name (never a str key)."""


def collect_leaves(
    value: Any,
    prefix: str,
    leaves: dict,
    stats: TransformStats,
    depth: int,
    excluded: frozenset[str] = NOTHING_EXCLUDED,
) -> None:
    """The raw non-null leaves by dotted record path; marks a collision instead of resolving it."""
    kind = type(value)
    if kind is dict or kind is list:
        if depth > MAX_NESTING_DEPTH:
            raise InvalidRecord(TOO_DEEP)
        pairs = value.items() if kind is dict else enumerate(value)
        for key, child in pairs:
            if key == "" or kind is dict and "." in key and has_empty_part(key):
                stats.drop(EMPTY_NAME)
                continue
            name = f"{prefix}.{key}" if prefix else str(key)
            if excluded and is_excluded(name, excluded):
                continue
            collect_leaves(child, name, leaves, stats, depth + 1, excluded)
    elif value is not None:
        if prefix in leaves:
            leaves[COLLIDED] = True
        else:
            leaves[prefix] = value


def resolve_collisions(
    value: Any, prefix: str, stats: TransformStats, excluded: frozenset[str]
) -> dict:
    """Rare path: of the leaves sharing a name, keep the one with the fewest path parts, then the
    first path in sorted order; count the others."""
    winners: dict[str, tuple[tuple[str, ...], Any]] = {}
    for path, leaf in _leaf_paths(value):
        name = ".".join((prefix, *path) if prefix else path)
        if excluded and is_excluded(name, excluded):
            continue
        held = winners.get(name)
        if held is None:
            winners[name] = (path, leaf)
            continue
        stats.drop(COLLIDING_NAME)
        if (len(path), path) < (len(held[0]), held[0]):
            winners[name] = (path, leaf)
    return {name: leaf for name, (_, leaf) in winners.items()}


def _leaf_paths(value: Any) -> list[tuple[tuple[str, ...], Any]]:
    """(path parts, scalar) of every non-null leaf; depth and empty keys were handled (and
    counted) by `collect_leaves` before this runs."""
    found: list[tuple[tuple[str, ...], Any]] = []
    pending: list[tuple[tuple[str, ...], Any]] = [((), value)]
    while pending:
        path, current = pending.pop()
        if type(current) is dict:
            pending.extend(
                (path + (key,), child)
                for key, child in current.items()
                if key != "" and not ("." in key and has_empty_part(key))
            )
        elif type(current) is list:
            pending.extend((path + (str(i),), child) for i, child in enumerate(current))
        elif current is not None:
            found.append((path, current))
    return found


def without_excluded(value: Any, path: str, excluded: frozenset[str], depth: int) -> Any:
    """A copy of `value` (at record `path`) without what is excluded under it, so a list
    column joined as JSON cannot carry an excluded field."""
    kind = type(value)
    if kind is not dict and kind is not list:
        return value
    if depth > MAX_NESTING_DEPTH:
        raise InvalidRecord(TOO_DEEP)
    if kind is list:
        return [
            without_excluded(child, f"{path}.{i}", excluded, depth + 1)
            for i, child in enumerate(value)
            if not is_excluded(f"{path}.{i}", excluded)
        ]
    return {
        key: without_excluded(child, f"{path}.{key}", excluded, depth + 1)
        for key, child in value.items()
        if not is_excluded(f"{path}.{key}", excluded)
    }


def integer_text(value: int) -> str | None:
    """An integer's exact decimal text, or None when it is longer than a Heap value (the sign
    counts: Heap stores the text). The bit length first refuses what is certainly too long, so
    no integer beyond Python's conversion limit is ever written out."""
    if value.bit_length() > MAX_TEXT_BITS:
        return None
    text = str(value)
    return text if len(text) <= MAX_VALUE else None


def join_list(values: list, depth: int) -> str | None:
    """Heap's convention for arrays: one string joined with `||` (objects as compact JSON).

    None when nothing is left once nulls are left out, so `[]` and `[null]` send nothing
    instead of an empty string that would overwrite a user property.
    """
    parts = []
    for value in values:
        if value is None:
            continue
        if type(value) is str:
            parts.append(value)
        else:
            parts.append(to_json(value, depth + 1).decode("utf-8", "replace"))
    if not parts:
        return None
    return heap_limits.ARRAY_JOINER.join(parts)


def put_value(
    out: dict,
    name: str,
    value: Any,
    stats: TransformStats,
    depth: int = 2,
    path: str | None = None,
    excluded: frozenset[str] = NOTHING_EXCLUDED,
) -> None:
    """A value sent under `name`: objects give their leaves, lists are joined, and a string,
    number or boolean is stored as Heap can hold it, or dropped and counted.

    `depth` is where the value sits in the record (2 for a top-level column), `path` the column
    as written when `name` renames it, `excluded` the excluded record paths under the column.
    One function for all three, so a listed scalar column costs one call, and every leaf of an
    object meets the same checks.
    """
    kind = type(value)
    if kind is dict:
        flatten_value(value, name if path is None else path, out, stats, depth, excluded, name)
        return
    if kind is list:
        if excluded:
            value = without_excluded(value, name if path is None else path, excluded, depth)
        value = join_list(value, depth)
        kind = str
    if value is None:
        return
    if len(name) > MAX_KEY:
        stats.drop(NAME_TOO_LONG)
        return
    if kind is str:
        if len(value) > MAX_VALUE:
            value = value[:MAX_VALUE]
            stats.truncated_values += 1
    elif kind is int:
        if not -MAX_EXACT_INTEGER <= value <= MAX_EXACT_INTEGER:
            value = integer_text(value)  # exact digits: JSON readers round beyond 2**53
            if value is None:
                stats.drop(NUMBER_TOO_LONG)
                return
    elif kind is float:
        if not math.isfinite(value):
            stats.drop(NOT_FINITE)
            return
    elif kind is RawNumber:  # beyond a double's range: its text, never infinity or null
        if len(value.text) > MAX_VALUE:
            stats.drop(NUMBER_TOO_LONG)
            return
        value = value.text
    elif kind is not bool:
        value = str(value)
    out[name] = value


def merge_enclosed(out: dict, produced: dict, stats: TransformStats) -> None:
    """The properties a column inside another listed column gave (`a.b` with `a`, see
    `config.PropertyColumn.enclosed`, put in `produced` by `put_value`), added to those of the
    columns before it. Both read the same part of the record, so they agree, except where a key
    with dots gives one name two values (`{"a": {"b.c": 1, "b": {"c": 2}}}`): then the
    enclosing column's value, already in `out`, is kept (of the paths under it, the one with
    the fewest parts, as under `*`), and the other is counted."""
    for key, leaf in produced.items():
        held = out.get(key, ABSENT)
        if held is ABSENT:
            out[key] = leaf
        elif held != leaf or type(held) is not type(leaf):  # True == 1, but not in JSON
            stats.drop(ENCLOSED_COLLISION)


ABSENT = object()


# -- JSON of values ------------------------------------------------------------------------------
def to_json(value: Any, depth: int = 1, sort_keys: bool = False) -> bytes:
    """Compact JSON of any JSON value, exact, or InvalidRecord (never another error).

    orjson first; it refuses integers wider than 64 bits, nesting past its limit and
    `RawNumber`s, which the standard library then writes exactly (`exact_json` for a value that
    holds a RawNumber), or the record is too deeply nested. `depth` is where the value sits (the
    record is 1): orjson's limit counts from the value, so it is the connector's only for a
    whole record, and a value deeper in the record (an object in a list column) is measured
    first, so that it is refused as it would be under `*`.
    """
    if depth > 1:
        refuse_too_deep(value, depth)
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    except (orjson.JSONEncodeError, TypeError):
        pass
    refuse_too_deep(value, depth)
    try:
        text = json.dumps(value, sort_keys=sort_keys, **STANDARD_JSON)
    except ValueError:  # an integer of more than 4300 digits, or a non-finite float
        raise InvalidRecord(UNWRITABLE_NUMBER) from None
    except TypeError:  # a RawNumber, which json.dumps cannot write as a number
        text = exact_json(value, sort_keys)
    return text.encode("utf-8", "surrogatepass")


STANDARD_JSON: dict[str, Any] = {
    "separators": (",", ":"),
    "ensure_ascii": False,
    "allow_nan": False,
}
"""The standard library's compact form, the one `to_json` has always hashed when orjson could
not write a record: unchanged, so the idempotency keys of such records stay the same."""


def exact_json(value: Any, sort_keys: bool) -> str:
    """`json.dumps`'s compact form, with each RawNumber written as its literal: a record that
    holds one hashes differently from every other record (no double or int prints as `1e400`
    or with more than 4300 digits). Only for values `nesting_depth` has already bounded."""
    kind = type(value)
    if kind is RawNumber:
        return value.text
    if kind is dict:
        pairs = sorted(value.items()) if sort_keys else value.items()
        return (
            "{"
            + ",".join(
                f"{json.dumps(key, **STANDARD_JSON)}:{exact_json(child, sort_keys)}"
                for key, child in pairs
            )
            + "}"
        )
    if kind is list:
        return "[" + ",".join(exact_json(child, sort_keys) for child in value) + "]"
    try:
        return json.dumps(value, **STANDARD_JSON)
    except (ValueError, TypeError):  # as in `to_json`
        raise InvalidRecord(UNWRITABLE_NUMBER) from None


def refuse_too_deep(value: Any, depth: int) -> None:
    """InvalidRecord when `value`, at `depth` in the record, holds a container deeper than
    MAX_NESTING_DEPTH."""
    if depth - 1 + nesting_depth(value) > MAX_NESTING_DEPTH:
        raise InvalidRecord(TOO_DEEP)


def nesting_depth(value: Any) -> int:
    """Containers on the deepest path (a scalar is 0, `{}` is 1); iterative, any depth."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        current, depth = pending.pop()
        kind = type(current)
        if kind is dict or kind is list:
            deepest = max(deepest, depth)
            children = current.values() if kind is dict else current
            pending.extend((child, depth + 1) for child in children)
    return deepest


# -- identity, account id, event -----------------------------------------------------------------
def number_as_text(value: Any) -> str | None:
    """A number written exactly as text, for a field that takes text; None for anything else.

    A float can stand for an integer only below 2**53: 2**53 itself is also what
    `9007199254740993.0` parses to, so from there on two distinct ids could have become one,
    and the value is refused rather than guessed. A number beyond a double's range
    (`RawNumber`) is such a float too.
    """
    kind = type(value)
    if kind is int:
        return integer_text(value)
    if kind is float and math.isfinite(value):
        if not value.is_integer():
            return repr(value)
        if abs(value) < MAX_EXACT_INTEGER:
            return str(int(value))
    return None


NUMBER_TYPES = (int, float, RawNumber)

MAX_USER_ID = heap_limits.MAX_USER_ID
USER_ID_DIGITS = len(str(MAX_USER_ID))
NOT_A_USER_ID = "is not a user_id (an integer from 0 to 2^53-1, as a number or its digits)"


def user_id_text(value: Any, column: str) -> str:
    """Heap's `user_id`, "the string form of an integer from 0 to 2^53-1", in its canonical
    decimal form (`"0042"` and `42` and `42.0` are all `"42"`): from text of ASCII digits
    alone, an integer, or a float that is integral (every float up to 2^53-1 that is integral
    holds its integer exactly). Anything else makes the record invalid: a sign, a fraction, an
    exponent or a space in text, a number out of range, a boolean, a number beyond a double's
    range (`RawNumber`)."""
    kind = type(value)
    if kind is str:
        if value.isascii() and value.isdigit():
            digits = value.lstrip("0") or "0"
            if len(digits) <= USER_ID_DIGITS and int(digits) <= MAX_USER_ID:
                return digits
    elif kind is int:
        if 0 <= value <= MAX_USER_ID:
            return str(value)
    elif kind is float:
        if value.is_integer() and 0 <= value <= MAX_USER_ID:
            return str(int(value))
    elif value is None:
        raise InvalidRecord(f"{column} is missing or null", column)
    raise InvalidRecord(f"{column} {NOT_A_USER_ID}", column)


def user_id_number(value: Any, column: str) -> int:
    """The same rule for the User Deletion API, which takes the user_id as a JSON integer."""
    return int(user_id_text(value, column))


def required_text(value: Any, column: str, max_length: int | None) -> str:
    """Identity, account id, event name, a key column: a string, or a number written exactly
    as text; the record is invalid when it is neither, is blank, or exceeds `max_length`."""
    text = value if type(value) is str else number_as_text(value)
    if text is None:
        if value is None:
            raise InvalidRecord(f"{column} is missing or null", column)
        if type(value) in NUMBER_TYPES:
            raise InvalidRecord(f"{column} is a number too large to be written exactly", column)
        raise InvalidRecord(f"{column} is not a string or number", column)
    if not text or text.isspace():
        raise InvalidRecord(f"{column} is blank", column)
    if max_length is not None and len(text) > max_length:
        raise InvalidRecord(f"{column} is longer than {max_length} characters", column)
    return text


# -- timestamp -----------------------------------------------------------------------------------
_DATE_START = re.compile(r"\d{4}[-/]|\d{8}", re.ASCII)
"""A timestamp string must start with a date: no words (`now`), no time of day alone (`12:00`)."""


def format_utc(moment: datetime) -> str:
    """The one form every converted timestamp takes: `2022-10-21T04:09:54.622Z` (UTC, `Z`,
    milliseconds or microseconds only when not zero)."""
    moment = moment.astimezone(UTC)
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    micro = moment.microsecond
    if micro:
        text += f".{micro // 1000:03d}" if micro % 1000 == 0 else f".{micro:06d}"
    return text + "Z"


def now_iso8601() -> str:
    """The time of loading, in the same form (`2022-10-26T03:06:59.123Z`)."""
    return format_utc(datetime.now(UTC))


def is_canonical_timestamp(text: str) -> bool:
    """A valid ISO 8601 UTC date-time ending in `Z`: sent unchanged, so documented examples
    (`2022-10-21T04:09:54.622Z`) come out exactly.

    Runs once per record, so the form is checked by position (a regex costs more than the rest
    together): seconds present, then `Z`, or a fraction of 1 to 9 digits after a `.` (Python
    also takes `,` and an empty fraction, which Heap's ISO 8601 readers might not); then
    `fromisoformat` checks the digits and the calendar."""
    size = len(text)
    if (
        size < 20
        or size > 30
        or text[-1] != "Z"
        or text[4:17:3] != "--T::"  # the separators at 4, 7, 10, 13 and 16
        or (size > 20 and (size == 21 or text[19] != "."))
    ):
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def normalise_timestamp(value: Any) -> str | None:
    """ISO 8601 UTC text for Heap, or None when the value is not a point in time.

    Accepted: ISO 8601 dates and date-times (a naive one is UTC), `2022/10/21` forms, and epoch
    seconds or milliseconds as numbers. Refused: words, times of day without a date, durations.
    """
    kind = type(value)
    if kind is str:
        text = value.strip()
        if is_canonical_timestamp(text):
            return text
        if _DATE_START.match(text) is None:
            return None
        return _parse_date_text(text)
    if kind is int or kind is float:
        try:
            seconds = value / 1000 if abs(value) > EPOCH_MILLISECONDS_THRESHOLD else value
            return format_utc(datetime.fromtimestamp(seconds, tz=UTC))
        except (OverflowError, OSError, ValueError):  # beyond datetime's years 1-9999, or NaN
            return None
    return None


def _parse_date_text(text: str) -> str | None:
    try:
        parsed = pendulum.parse(text, exact=True)
        if isinstance(parsed, datetime):
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return format_utc(parsed)
        if isinstance(parsed, date):
            return format_utc(datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC))
    except Exception:  # a third-party parser on arbitrary text: any failure means "not a date"
        return None
    return None  # a time of day, a duration or an interval


def optional_timestamp(value: Any, column: str | None) -> str | None:
    """A date-time in the one UTC form; None when the value is empty (identify then sends no
    timestamp, and Heap takes the time of the call)."""
    normalised = normalise_timestamp(value)
    if normalised is not None:
        return normalised
    if value is None or (type(value) is str and not value.strip()):
        return None
    raise InvalidRecord(f"{column} is not a date-time (ISO 8601, date text or epoch)", column)


def drop_reserved_id(properties: dict, stats: TransformStats) -> None:
    """Heap rejects a user property named `id` in any casing; drop it instead of the user."""
    for key in [k for k in properties if len(k) == 2 and k.lower() == "id"]:
        del properties[key]
        stats.drop(RESERVED_ID)


def record_hash(data: dict, stream_key: bytes) -> str:
    """A stable idempotency key: the same record of the same stream always gives the same key.

    Canonical JSON (sorted keys, orjson's number formatting) so key order in the source does
    not matter; 32 hex characters (128 bits) of SHA-256. Integers wider than 64 bits keep every
    digit, so two records that differ only there get different keys.
    """
    canonical = to_json(data, sort_keys=True)
    return hashlib.sha256(stream_key + canonical).hexdigest()[:32]


def stream_key(namespace: str | None, name: str) -> bytes:
    """The stream part of the idempotency hash; namespaced streams of one name differ."""
    return orjson.dumps([namespace, name]) + b"\n"


# -- the item of each API type -------------------------------------------------------------------
class Fill(Enum):
    """The rule an item field's value is read by."""

    TEXT = "the column's value as text (`required_text`)"
    TIMESTAMP = "the column's point in time (`optional_timestamp`), else the time of loading"
    OPTIONAL_TIMESTAMP = "a point in time, the field left out when empty (`optional_timestamp`)"
    USER_ID_TEXT = "the column's value as Heap's user_id, in decimal text (`user_id_text`)"
    USER_ID_NUMBER = "the column's value as Heap's user_id, a JSON integer (`user_id_number`)"
    PROPERTIES = "the property columns, or every leaf for `*` (`put_value`, `flatten_value`)"


class Unset(Enum):
    """What a field holds when the mapping names no column for it."""

    REQUIRED = "nothing: the config refuses a mapping without the column"
    EVENT_NAME = "the mapping's constant `event_name`"
    NOW = "the time of loading"
    RECORD_HASH = "a hash of the record and its stream (`record_hash`)"
    OMITTED = "nothing: the field is left out of the item"
    INSTEAD = "the field's `instead` (an event's user: its user_id, else its identity)"


@dataclass(frozen=True)
class ItemField:
    """One field of a Heap item: its key, the rule that fills it, and the `ColumnMapping`
    setting that names its column (`identity_column`)."""

    name: str
    fill: Fill
    column: str | None = None
    max_length: int | None = None
    """The longest text Heap documents for the field; None where it documents none."""
    unset: Unset = Unset.REQUIRED
    instead: ItemField | None = None
    """With `Unset.INSTEAD`: the field sent in this one's place (Heap takes either, not both,
    and the config requires exactly one of the two columns)."""

    @property
    def may_be_left_out(self) -> bool:
        """Whether an item can lack the field even when the mapping names its column."""
        return self.fill is Fill.OPTIONAL_TIMESTAMP

    def chosen(self, mapping: ColumnMapping) -> ItemField | None:
        """The field a mapping's items carry in this one's place; None when they lack it."""
        if self.column is None or getattr(mapping, self.column) is not None:
            return self
        if self.unset is Unset.INSTEAD:
            assert self.instead is not None
            return self.instead.chosen(mapping)
        if self.unset is Unset.OMITTED:
            return None
        return self


@dataclass(frozen=True)
class ItemShape:
    """The fields of one API type's item, in the order they are sent, and whether Heap reserves
    the property name `id` (it rejects the whole user for one)."""

    fields: tuple[ItemField, ...]
    reserved_id: bool = False

    def __post_init__(self) -> None:
        """A field that may be left out comes after every field that may not, so the items of
        one mapping have one order whichever fields they carry."""
        optional = [item_field.may_be_left_out for item_field in self.fields]
        assert optional == sorted(optional), "fields that may be left out come last"

    @property
    def names(self) -> tuple[str, ...]:
        """Every key an item of this API type may have, alternatives included."""
        names: list[str] = []
        for item_field in self.fields:
            current: ItemField | None = item_field
            while current is not None:
                names.append(current.name)
                current = current.instead
        return tuple(names)

    def fields_for(self, mapping: ColumnMapping) -> tuple[ItemField, ...]:
        """The fields a mapping's items carry, in order."""
        chosen = (item_field.chosen(mapping) for item_field in self.fields)
        return tuple(item_field for item_field in chosen if item_field is not None)


IDENTITY = ItemField("identity", Fill.TEXT, "identity_column", heap_limits.MAX_IDENTITY_LENGTH)
PROPERTIES = ItemField("properties", Fill.PROPERTIES)
USER_ID_TEXT = ItemField("user_id", Fill.USER_ID_TEXT, "user_id_column")
EVENT_USER = ItemField(
    "user_id", Fill.USER_ID_TEXT, "user_id_column", unset=Unset.INSTEAD, instead=IDENTITY
)
DELETED_USER = ItemField(
    "user_id", Fill.USER_ID_NUMBER, "user_id_column", unset=Unset.INSTEAD, instead=IDENTITY
)

ITEM_SHAPES: dict[ApiType, ItemShape] = {
    ApiType.TRACK: ItemShape(
        (
            EVENT_USER,
            ItemField(
                "event",
                Fill.TEXT,
                "event_column",
                heap_limits.MAX_EVENT_NAME_LENGTH,
                Unset.EVENT_NAME,
            ),
            ItemField("timestamp", Fill.TIMESTAMP, "timestamp_column", unset=Unset.NOW),
            PROPERTIES,
            ItemField(
                "idempotency_key", Fill.TEXT, "idempotency_key_column", unset=Unset.RECORD_HASH
            ),
        )
    ),
    ApiType.ADD_USER_PROPERTIES: ItemShape((IDENTITY, PROPERTIES), reserved_id=True),
    ApiType.ADD_ACCOUNT_PROPERTIES: ItemShape(
        (ItemField("account_id", Fill.TEXT, "account_id_column"), PROPERTIES)
    ),
    ApiType.IDENTIFY: ItemShape(
        (
            IDENTITY,
            USER_ID_TEXT,
            ItemField(
                "timestamp", Fill.OPTIONAL_TIMESTAMP, "timestamp_column", unset=Unset.OMITTED
            ),
        )
    ),
    ApiType.DELETE_USERS: ItemShape((DELETED_USER,)),
}
"""Every API type's item, stated once: the transform is compiled from it, and a dry run's
description of an item names only its fields."""

ITEM_FIELD_NAMES = frozenset(name for shape in ITEM_SHAPES.values() for name in shape.names)


# -- compiling a mapping ---------------------------------------------------------------------------
Transform = Callable[[dict, bytes], HeapItem]
Reader = Callable[[dict, bytes], Any]
"""One field's value from the record data and the stream's key (`stream_key`)."""


class RecordTransformer:
    """Turns record data into the Heap item for the configured API type.

    `transform(data, stream_key)` raises InvalidRecord; `stats` counts values changed on the way
    (truncations, dropped properties). It is compiled once per stream (`compile_transform`).
    """

    def __init__(
        self,
        mapping: ColumnMapping,
        now: Callable[[], str] | None = None,
        stats: TransformStats | None = None,
    ) -> None:
        """`now` gives the timestamp of items without one (injectable for tests); `stats` is
        where the changes to values are counted (the route's)."""
        self.mapping = mapping
        self.stats = stats if stats is not None else TransformStats()
        self.transform: Transform = compile_transform(mapping, self.stats, now or now_iso8601)


def compile_transform(
    mapping: ColumnMapping, stats: TransformStats, now: Callable[[], str]
) -> Transform:
    """The mapping's transform: one reader per field its items carry (`ItemShape.fields_for`),
    each a closure over what the mapping fixes (getters, names, limits), so a record costs the
    rule functions' own work and little else (figures in docs/performance.md)."""
    shape = ITEM_SHAPES[mapping.api_type]
    fields = shape.fields_for(mapping)
    always = tuple(
        (item_field.name, compile_field(item_field, shape, mapping, stats, now))
        for item_field in fields
        if not item_field.may_be_left_out
    )
    optional = tuple(
        (item_field.name, compile_field(item_field, shape, mapping, stats, now))
        for item_field in fields
        if item_field.may_be_left_out
    )

    def transform(data: dict, stream_key: bytes = b"") -> HeapItem:
        item = {}
        for name, read in always:
            item[name] = read(data, stream_key)
        return item

    if not optional:
        return transform

    def transform_with_optional_fields(data: dict, stream_key: bytes = b"") -> HeapItem:
        item = transform(data, stream_key)
        for name, read in optional:  # last, as `ItemShape` keeps them
            value = read(data, stream_key)
            if value is not None:
                item[name] = value
        return item

    return transform_with_optional_fields


def compile_field(
    item_field: ItemField,
    shape: ItemShape,
    mapping: ColumnMapping,
    stats: TransformStats,
    now: Callable[[], str],
) -> Reader:
    """The reader of one field: the field's rule applied to the value of its column, or what
    the field holds when the mapping names no column (`Unset`)."""
    fill = item_field.fill
    if fill is Fill.PROPERTIES:
        return compile_properties(mapping, shape.reserved_id, stats)
    assert item_field.column is not None
    column: ColumnPath | None = getattr(mapping, item_field.column)
    if column is None:
        return compile_unset(item_field, mapping, now)
    get, name, limit = compile_getter(column), column.name, item_field.max_length
    if fill is Fill.TEXT:
        return lambda data, _stream: required_text(get(data), name, limit)
    if fill is Fill.TIMESTAMP:
        return lambda data, _stream: optional_timestamp(get(data), name) or now()
    if fill is Fill.OPTIONAL_TIMESTAMP:
        return lambda data, _stream: optional_timestamp(get(data), name)
    if fill is Fill.USER_ID_TEXT:
        return lambda data, _stream: user_id_text(get(data), name)
    return lambda data, _stream: user_id_number(get(data), name)


def compile_unset(item_field: ItemField, mapping: ColumnMapping, now: Callable[[], str]) -> Reader:
    """A field without a column: the constant event name, the time of loading, or the hash; a
    required column the config let through is an error when the stream's route is built, not
    on the first record."""
    unset = item_field.unset
    if unset is Unset.EVENT_NAME:
        event = mapping.event_name
        return lambda data, _stream: event
    if unset is Unset.NOW:
        return lambda data, _stream: now()
    if unset is Unset.RECORD_HASH:
        return record_hash
    raise ValueError(f"the mapping names no {item_field.column}, which the config requires")


PropertyPlan = tuple[Getter, str, int, str, frozenset[str]]
"""A listed property column, as `put_value` takes it: getter, property name, depth of its value
in the record, the column as written, the excluded record paths under it."""


def compile_properties(mapping: ColumnMapping, reserved_id: bool, stats: TransformStats) -> Reader:
    """The properties reader: every leaf (`*`), or the listed columns in the config's order, a
    column inside another after the columns that hold it (`merge_enclosed`)."""
    excluded = mapping.exclude_columns
    if mapping.property_columns is None:

        def every_leaf(data: dict, _stream: bytes) -> dict:
            out: dict = {}
            flatten_value(data, "", out, stats, 1, excluded)
            if reserved_id:
                drop_reserved_id(out, stats)
            return out

        return every_leaf
    listed = mapping.property_columns
    outer = tuple(plan_column(column, excluded) for column in listed if not column.enclosed)
    inner = tuple(plan_column(column, excluded) for column in listed if column.enclosed)

    def columns(data: dict, _stream: bytes) -> dict:
        out: dict = {}
        for get, name, depth, path, below in outer:
            put_value(out, name, get(data), stats, depth, path, below)
        for get, name, depth, path, below in inner:  # after every column that encloses them
            produced: dict = {}
            put_value(produced, name, get(data), stats, depth, path, below)
            merge_enclosed(out, produced, stats)
        if reserved_id:
            drop_reserved_id(out, stats)
        return out

    return columns


def plan_column(column: PropertyColumn, excluded: frozenset[str]) -> PropertyPlan:
    """What `put_value` needs of a listed column, computed once: its value sits one level below
    its path's parts (the record is depth 1), and only the exclusions under it can apply."""
    path = column.path.name
    below = frozenset(name for name in excluded if name.startswith(f"{path}."))
    return (compile_getter(column.path), column.name, len(column.path.segments) + 1, path, below)
