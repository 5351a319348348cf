"""The generated fast path equals the rules: a differential test.

`transform_codegen` writes each mapping's transform as one flat function that handles the
common cases inline (a plain string within its limit, a canonical timestamp, a scalar property)
and calls the rule functions of `transformer.py` for the rest. The inline cases repeat the
conditions of the rules, so here the same rule functions are composed plainly, without code
generation and without any inline case, and both paths must give the same item, or the same
invalid reason, and count the same changes, for every generated record of every mapping.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from destination_heap_analytics import heap_limits
from destination_heap_analytics.config import ApiType, ColumnMapping, ColumnPath, parse_config
from destination_heap_analytics.json_numbers import RawNumber
from destination_heap_analytics.transformer import (
    InvalidRecord,
    RecordTransformer,
    TransformStats,
    compile_getter,
    drop_reserved_id,
    flatten_value,
    merge_enclosed,
    optional_timestamp,
    put_value,
    read_timestamp,
    record_hash,
    required_text,
    stream_key,
    user_id_number,
    user_id_text,
)

RECORDS = 10_000
STREAM = stream_key("public", "events")
NOW = "2023-05-21T12:00:00Z"


def reference_transform(
    mapping: ColumnMapping, stats: TransformStats
) -> Callable[[dict, bytes], dict]:
    """The mapping's rules composed plainly, in the field order of the generated code."""

    def text(column: ColumnPath | None, limit: int | None) -> Callable[[dict], str]:
        get = compile_getter(column)
        return lambda data: required_text(get(data), column.name, limit)

    def timestamp(data: dict) -> str:
        column = mapping.timestamp_column
        if column is None:
            return NOW
        return read_timestamp(compile_getter(column)(data), column.name, lambda: NOW)

    def properties(data: dict) -> dict:
        out: dict = {}
        excluded = mapping.exclude_columns
        if mapping.property_columns is None:
            flatten_value(data, "", out, stats, 1, excluded)
        for column in mapping.property_columns or ():
            value = compile_getter(column.path)(data)
            if value is not None:
                path = column.path.name
                below = frozenset(e for e in excluded if e.startswith(f"{path}."))
                into = {} if column.enclosed else out
                depth = len(column.path.segments) + 1
                put_value(into, column.name, value, stats, depth, path, below)
                if column.enclosed:
                    merge_enclosed(out, into, stats)
        if mapping.api_type is ApiType.ADD_USER_PROPERTIES:
            drop_reserved_id(out, stats)
        return out

    def user_id(rule: Callable[[Any, str], Any]) -> Callable[[dict], Any]:
        column = mapping.user_id_column
        get = compile_getter(column)
        return lambda data: rule(get(data), column.name)

    def user(rule: Callable[[Any, str], Any]) -> tuple[str, Callable[[dict], Any]]:
        """An event's or a deletion's user: by user_id when mapped, else by identity."""
        if mapping.user_id_column is not None:
            return "user_id", user_id(rule)
        return "identity", text(mapping.identity_column, heap_limits.MAX_IDENTITY_LENGTH)

    if mapping.api_type is ApiType.TRACK:
        field, who = user(user_id_text)
        event = (
            (lambda data: mapping.event_name)
            if mapping.event_name is not None
            else text(mapping.event_column, heap_limits.MAX_EVENT_NAME_LENGTH)
        )
        key_column = mapping.idempotency_key_column
        key = text(key_column, None) if key_column is not None else None

        def track(data: dict, stream: bytes) -> dict:
            item = {field: who(data), "event": event(data)}
            item["timestamp"] = timestamp(data)
            item["properties"] = properties(data)
            item["idempotency_key"] = key(data) if key else record_hash(data, stream)
            return item

        return track
    if mapping.api_type is ApiType.ADD_USER_PROPERTIES:
        user = text(mapping.identity_column, heap_limits.MAX_IDENTITY_LENGTH)
        return lambda data, stream: {"identity": user(data), "properties": properties(data)}
    if mapping.api_type is ApiType.IDENTIFY:
        identity, sdk_user = text(mapping.identity_column, 255), user_id(user_id_text)

        def identify(data: dict, stream: bytes) -> dict:
            item = {"identity": identity(data), "user_id": sdk_user(data)}
            column = mapping.timestamp_column
            if column is not None:
                at = optional_timestamp(compile_getter(column)(data), column.name)
                if at is not None:
                    item["timestamp"] = at
            return item

        return identify
    if mapping.api_type is ApiType.DELETE_USERS:
        field, who = user(user_id_number)
        return lambda data, stream: {field: who(data)}
    account = text(mapping.account_id_column, None)
    return lambda data, stream: {"account_id": account(data), "properties": properties(data)}


MAPPINGS = {
    "track, explicit columns": {
        "api_type": "track",
        "identity_column": "user",
        "event_column": "meta.kind",
        "timestamp_column": "at",
        "property_columns": "name, n, tags, meta, list.0, a.b, flag",
    },
    "track, all columns, constant event, key column": {
        "api_type": "track",
        "identity_column": "user",
        "event_name": "Order Completed",
        "idempotency_key_column": "n",
        "property_columns": "*",
        "exclude_columns": "meta.secret, list",
    },
    "track, nested identity and timestamp": {
        "api_type": "track",
        "identity_column": "meta.user",
        "event_column": "name",
        "timestamp_column": "meta.at",
        "property_columns": "*",
    },
    "user properties, renames and exclusions": {
        "api_type": "add_user_properties",
        "identity_column": "user",
        "property_columns": "name as full_name, meta as m, tags as labels, id, ID as other",
        "exclude_columns": "meta.secret",
    },
    "user properties, all columns": {
        "api_type": "add_user_properties",
        "identity_column": "n",
        "property_columns": "*",
    },
    "account properties, all columns with exclusions": {
        "api_type": "add_account_properties",
        "account_id_column": "meta.user",
        "property_columns": "*",
        "exclude_columns": "a, tags",
    },
    "account properties, columns inside columns": {
        "api_type": "add_account_properties",
        "account_id_column": "user",
        "property_columns": "a.b, meta.kind, a, meta as m, meta.user as m.user, list, list.0",
    },
    "track by user_id": {
        "api_type": "track",
        "user_id_column": "sdk",
        "event_column": "meta.kind",
        "timestamp_column": "at",
        "property_columns": "*",
    },
    "identify, nested user_id and a timestamp": {
        "api_type": "identify",
        "identity_column": "user",
        "user_id_column": "meta.sdk",
        "timestamp_column": "at",
    },
    "identify, no timestamp": {
        "api_type": "identify",
        "identity_column": "name",
        "user_id_column": "sdk",
    },
    "delete users by identity": {"api_type": "delete_users", "identity_column": "meta.user"},
    "delete users by user_id": {"api_type": "delete_users", "user_id_column": "list.1"},
    "account properties, list index and dotted key": {
        "api_type": "add_account_properties",
        "account_id_column": "list.1",
        "property_columns": "a.b, list.0, name, n",
    },
}


class Awkward:
    """Records with every kind of value a source sends at the edges, from a seeded generator."""

    TEXTS = [
        "",
        " ",
        "plain",
        "café ☕ 🙂",
        "x" * 1023,
        "y" * 1024,
        "z" * 300,
        "2022-10-21T04:09:54.622Z",
        "2022-10-21T04:09:54",
        "2022-10-21 06:09:54+02:00",
        "12:00",
        "now",
        "0",
        "id",
        "a.b",
        "\ufffd",
        "007",
        "9007199254740991",
        "9007199254740992",
        "+1",
        "1e3",
        " 12",
        "١٢",
    ]
    NUMBERS = [
        0,
        1,
        -1,
        1666325394,
        1666325394622,
        2**53,
        2**53 + 1,
        -(2**63),
        12345678901234567890123,
        10**1100,
        1.5,
        1e300,
        -0.0,
        1.2345678901234568e22,
        2.0**53,
        2.0**53 - 1,
        10**1023 - 1,
        -(10**1023 - 1),
        10**1023,
        RawNumber("1e400"),
        RawNumber("-1e400"),
        RawNumber("1" * 400 + ".5"),
        RawNumber("9" * 5000),
        2**53 - 1,
        9007199254740991.0,
        42.0,
        1e15,
    ]
    KEYS = [
        "user",
        "n",
        "name",
        "tags",
        "meta",
        "list",
        "a",
        "b",
        "a.b",
        "b.b",
        "",
        "x.",
        "id",
        "ID",
        "secret",
        "kind",
        "at",
        "flag",
        "0",
        "sdk",
    ]

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def record(self) -> dict:
        """Half start from a record the mappings can load, so both outcomes are common."""
        data = self.loadable() if self.random.random() < 0.5 else {}
        data.update({self.key(): self.value(depth=1) for _ in range(self.random.randint(0, 9))})
        return data

    def loadable(self) -> dict:
        text = self.random.choice(["u-1", "jane@example.com", "café", "x" * 255])
        sdk = self.random.choice([0, 42, 2**53 - 1, "123", 7.0])
        return {
            "user": text,
            "n": self.random.randint(0, 10**6),
            "name": text,
            "sdk": sdk,
            "meta": {
                "user": text,
                "kind": "Signed Up",
                "at": "2022-10-21T04:09:54Z",
                "sdk": sdk,
            },
            "list": [text, sdk],
            "at": self.random.choice([1666325394, "2022-10-21", None, ""]),
        }

    def key(self) -> str:
        return self.random.choice(self.KEYS)

    def value(self, depth: int) -> Any:
        roll = self.random.random()
        if roll < 0.12 and depth < 6:
            return {self.key(): self.value(depth + 1) for _ in range(self.random.randint(0, 4))}
        if roll < 0.22 and depth < 6:
            return [self.value(depth + 1) for _ in range(self.random.randint(0, 4))]
        if roll < 0.24:
            return self.deep(self.random.choice([250, 253, 254, 300]))
        if roll < 0.34:
            return None
        if roll < 0.42:
            return self.random.choice([True, False])
        if roll < 0.65:
            return self.random.choice(self.NUMBERS)
        return self.random.choice(self.TEXTS)

    def deep(self, levels: int) -> Any:
        value: Any = "leaf"
        for level in range(levels):
            value = {"k": value} if level % 2 else [value]
        return value


def outcome(transform: Callable[[dict, bytes], dict], data: dict) -> tuple[str, Any]:
    try:
        return "item", transform(data, STREAM)
    except InvalidRecord as invalid:
        return "invalid", invalid.reason


@pytest.mark.parametrize("name", sorted(MAPPINGS))
def test_the_generated_transform_equals_the_rules_on_generated_records(name):
    api = MAPPINGS[name]
    config = {"app_id": "11", "base_url": "https://heap.test", "api": api, "api_key": "k"}
    mapping = parse_config(config).default_mapping
    generated = RecordTransformer(mapping, now=lambda: NOW)
    reference_stats = TransformStats()
    reference = reference_transform(mapping, reference_stats)
    records = Awkward(seed=sorted(MAPPINGS).index(name))
    kinds = set()

    for _ in range(RECORDS):
        data = records.record()
        expected = outcome(reference, data)
        assert outcome(generated.transform, data) == expected, data
        kinds.add(expected[0])

    assert generated.stats == reference_stats
    assert kinds == {"item", "invalid"}, "the corpus reaches both outcomes"
