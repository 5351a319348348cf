"""The transform against a model of the README's "Transformation rules", on generated mappings
and generated records.

There is one transform, compiled from the mapping and the item table (`transformer.ITEM_SHAPES`).
`Model` below states the rules a second time, plainly, from the README and not from the code: which
fields each API type's item has and in what order, how a column path finds its value, what `*`,
an object column, a list column, a rename and an exclusion send, collisions, limits, the reserved
`id`, and every reason and count. A specification restating the rules is the point: the two must
agree on every mapping hypothesis can build (API type, dotted, list-index and renamed columns,
columns inside columns, exclusions, `event_name` or `event_column`, a key column or the hash) and
every record it can build.

Three value-level rules are taken as given, each specified elsewhere: `normalise_timestamp`
(the timestamp forms, unit_tests/mapping/test_transformer.py), `record_hash` (pinned byte for
byte against 0.3.0, unit_tests/mapping/test_idempotency_keys.py) and `to_json`, the JSON writer
both use.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from destination_heap_analytics.config.settings import (
    ApiType,
    ColumnMapping,
    ColumnPath,
    ConfigError,
    parse_config,
)
from destination_heap_analytics.json_numbers import RawNumber
from destination_heap_analytics.mapping.transformer import (
    COLLIDING_NAME,
    EMPTY_NAME,
    ENCLOSED_COLLISION,
    NAME_TOO_LONG,
    NOT_FINITE,
    NUMBER_TOO_LONG,
    RESERVED_ID,
    TOO_DEEP,
    InvalidRecord,
    RecordTransformer,
    normalise_timestamp,
    record_hash,
    stream_key,
    to_json,
)

NOW = "2023-05-21T12:00:00Z"
STREAM = stream_key("public", "events")

# The README's numbers, written out: the model does not read heap_limits.
IDENTITY_CHARACTERS = 255
EVENT_CHARACTERS = 1024
PROPERTY_CHARACTERS = 1023
EXACT_INTEGER = 2**53
DEEPEST = 254
USER_ID_FORMS = "as a number or its digits"


class Invalid(Exception):
    """The model's verdict that the record is invalid, with the reason the README gives."""


class Model:
    """One mapping's items, by the README's rules; counts what the summary would report."""

    def __init__(self, mapping: ColumnMapping) -> None:
        self.mapping = mapping
        self.truncated = 0
        self.dropped: Counter[str] = Counter()

    # -- the item ---------------------------------------------------------------------------
    def item(self, data: dict, stream: bytes) -> dict:
        """The fields in the order the README's bodies show them; the first field that cannot
        be read makes the record invalid, and what was counted before it stays counted."""
        mapping = self.mapping
        if mapping.api_type is ApiType.TRACK:
            item = self.user(data, self.user_id_text)
            if mapping.event_name is not None:
                item["event"] = mapping.event_name
            else:
                item["event"] = self.text(mapping.event_column, data, EVENT_CHARACTERS)
            item["timestamp"] = self.timestamp(data) or NOW
            item["properties"] = self.properties(data)
            if mapping.idempotency_key_column is not None:
                item["idempotency_key"] = self.text(mapping.idempotency_key_column, data, None)
            else:
                item["idempotency_key"] = self.hashed(data, stream)
            return item
        if mapping.api_type is ApiType.ADD_USER_PROPERTIES:
            identity = self.text(mapping.identity_column, data, IDENTITY_CHARACTERS)
            properties = self.properties(data)
            for name in [name for name in properties if name.lower() == "id"]:
                del properties[name]
                self.dropped[RESERVED_ID] += 1
            return {"identity": identity, "properties": properties}
        if mapping.api_type is ApiType.IDENTIFY:
            item = {
                "identity": self.text(mapping.identity_column, data, IDENTITY_CHARACTERS),
                "user_id": self.user_id_text(mapping.user_id_column, data),
            }
            timestamp = self.timestamp(data)
            if timestamp is not None:  # no timestamp: Heap takes the time of the call
                item["timestamp"] = timestamp
            return item
        if mapping.api_type is ApiType.DELETE_USERS:
            return self.user(data, lambda column, data: int(self.user_id_text(column, data)))
        account = self.text(mapping.account_id_column, data, None)
        return {"account_id": account, "properties": self.properties(data)}

    def user(self, data: dict, user_id) -> dict:
        """An event's or a deletion's user: by user_id when the mapping names its column."""
        if self.mapping.user_id_column is not None:
            return {"user_id": user_id(self.mapping.user_id_column, data)}
        return {"identity": self.text(self.mapping.identity_column, data, IDENTITY_CHARACTERS)}

    def user_id_text(self, column: ColumnPath | None, data: dict) -> str:
        """Heap's "string form of an integer from 0 to 2^53-1", in decimal: from an integer, an
        integral float, or text of ASCII digits alone (leading zeros dropped)."""
        assert column is not None
        value, name = self.lookup(column, data), column.name
        if value is None:
            raise Invalid(f"{name} is missing or null")
        number: int | None = None
        if type(value) is int:
            number = value
        elif type(value) is float and value.is_integer():
            number = int(value)
        elif type(value) is str and value.isascii() and value.isdigit():
            digits = value.lstrip("0") or "0"
            number = int(digits) if len(digits) <= 16 else None
        if number is None or not 0 <= number < EXACT_INTEGER:
            raise Invalid(f"{name} is not a user_id (an integer from 0 to 2^53-1, {USER_ID_FORMS})")
        return str(number)

    def hashed(self, data: dict, stream: bytes) -> str:
        try:
            return record_hash(data, stream)
        except InvalidRecord as invalid:  # too deep to write: the README's depth rule
            raise Invalid(invalid.reason) from None

    # -- columns ----------------------------------------------------------------------------
    @staticmethod
    def lookup(column: ColumnPath, data: dict) -> Any:
        """`a.b` is `data["a"]["b"]`, `l.0` the first element of a list; when the path does not
        lead to a value, a top-level key spelt like the whole path is the value."""
        value: Any = data
        for part in column.name.split("."):
            if isinstance(value, dict):
                value = value.get(part)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                value = None
            if value is None:
                return data.get(column.name)
        return value

    # -- identity, account id, event, key column ----------------------------------------------
    def text(self, column: ColumnPath | None, data: dict, longest: int | None) -> str:
        assert column is not None
        value, name = self.lookup(column, data), column.name
        if value is None:
            raise Invalid(f"{name} is missing or null")
        if type(value) is str:
            text = value
        elif type(value) in (int, float, RawNumber):
            text = self.exact_text(value)
            if text is None:
                raise Invalid(f"{name} is a number too large to be written exactly")
        else:
            raise Invalid(f"{name} is not a string or number")
        if not text.strip():
            raise Invalid(f"{name} is blank")
        if longest is not None and len(text) > longest:
            raise Invalid(f"{name} is longer than {longest} characters")
        return text

    @staticmethod
    def exact_text(number: int | float | RawNumber) -> str | None:
        """`123` → "123", `12.0` → "12", `1.5` → "1.5"; None for a float of 2^53 or more,
        beyond a double's range, or an integer longer than a property value."""
        if type(number) is int:
            text = str(number)
            return text if len(text) <= PROPERTY_CHARACTERS else None
        if type(number) is float and math.isfinite(number):
            if not number.is_integer():
                return repr(number)
            return str(int(number)) if abs(number) < EXACT_INTEGER else None
        return None

    # -- timestamp --------------------------------------------------------------------------
    def timestamp(self, data: dict) -> str | None:
        """The record's time; None when it has none (an event then takes the time of loading)."""
        column = self.mapping.timestamp_column
        if column is None:
            return None
        value = self.lookup(column, data)
        if value is None or (type(value) is str and value.strip() == ""):
            return None
        normalised = normalise_timestamp(value)
        if normalised is None:
            raise Invalid(f"{column.name} is not a date-time (ISO 8601, date text or epoch)")
        return normalised

    # -- properties -------------------------------------------------------------------------
    def properties(self, data: dict) -> dict:
        excluded = self.mapping.exclude_columns
        out: dict = {}
        if self.mapping.property_columns is None:
            for name, leaf in self.leaves(data, "", 1, excluded).items():
                self.put(out, name, leaf)
            return out
        for column in self.mapping.property_columns:
            produced: dict = {}
            self.put_column(produced, column.name, column.path, data, excluded)
            for name, value in produced.items():
                if name not in out:
                    out[name] = value
                elif (out[name], type(out[name])) != (value, type(value)):
                    assert column.enclosed, "the config refuses columns that collide otherwise"
                    self.dropped[ENCLOSED_COLLISION] += 1
        return out

    def put_column(
        self, out: dict, name: str, path: ColumnPath, data: dict, excluded: frozenset[str]
    ) -> None:
        value = self.lookup(path, data)
        depth = len(path.name.split(".")) + 1  # the record itself is depth 1
        if isinstance(value, dict):
            for key, leaf in self.leaves(value, path.name, depth, excluded).items():
                self.put(out, name + key[len(path.name) :], leaf)
        elif isinstance(value, list):
            kept = self.without_excluded(value, path.name, depth, excluded)
            parts = [
                part if type(part) is str else self.json(part, depth + 1)
                for part in kept
                if part is not None
            ]
            if parts:
                self.put(out, name, "||".join(parts))
        else:
            self.put(out, name, value)

    def without_excluded(self, value: Any, path: str, depth: int, excluded: frozenset[str]) -> Any:
        """A list column leaves excluded fields out of its objects; reading through it, a
        container deeper than the limit makes the record invalid."""
        if not isinstance(value, dict | list):
            return value
        if depth > DEEPEST:
            raise Invalid(TOO_DEEP)
        pairs = value.items() if isinstance(value, dict) else enumerate(value)
        kept = {
            key: self.without_excluded(child, f"{path}.{key}", depth + 1, excluded)
            for key, child in pairs
            if not self.is_excluded(f"{path}.{key}", excluded)
        }
        return kept if isinstance(value, dict) else list(kept.values())

    def json(self, value: Any, depth: int) -> str:
        try:
            return to_json(value, depth).decode("utf-8", "replace")
        except InvalidRecord as invalid:
            raise Invalid(invalid.reason) from None

    def leaves(self, value: Any, prefix: str, depth: int, excluded: frozenset[str]) -> dict:
        """Every non-null scalar under `value` by its dotted record path (lists by index). A key
        with an empty part goes with everything under it, counted; an excluded path silently.
        Of the paths that give one name, the one with the fewest parts wins, then the first in
        sorted order; the others are counted."""
        found: dict[str, list[tuple[tuple[str, ...], Any]]] = {}

        def walk(current: Any, parts: tuple[str, ...], depth: int) -> None:
            if isinstance(current, dict | list):
                if depth > DEEPEST:
                    raise Invalid(TOO_DEEP)
                pairs = current.items() if isinstance(current, dict) else enumerate(current)
                for key, child in pairs:
                    key = str(key)
                    if isinstance(current, dict) and "" in key.split("."):
                        self.dropped[EMPTY_NAME] += 1
                        continue
                    if self.is_excluded(".".join(filter(None, (prefix, *parts, key))), excluded):
                        continue
                    walk(child, (*parts, key), depth + 1)
            elif current is not None:
                name = ".".join(filter(None, (prefix, *parts)))
                found.setdefault(name, []).append((parts, current))

        walk(value, (), depth)
        winners = {}
        for name, candidates in found.items():
            candidates.sort(key=lambda candidate: (len(candidate[0]), candidate[0]))
            self.dropped[COLLIDING_NAME] += len(candidates) - 1
            winners[name] = candidates[0][1]
        return winners

    @staticmethod
    def is_excluded(path: str, excluded: frozenset[str]) -> bool:
        return any(path == base or path.startswith(f"{base}.") for base in excluded)

    def put(self, out: dict, name: str, value: Any) -> None:
        """Strings, numbers and booleans, as Heap can hold them."""
        if value is None:
            return
        if len(name) > PROPERTY_CHARACTERS:
            self.dropped[NAME_TOO_LONG] += 1
            return
        if type(value) is str and len(value) > PROPERTY_CHARACTERS:
            value = value[:PROPERTY_CHARACTERS]
            self.truncated += 1
        elif type(value) is int and abs(value) > EXACT_INTEGER:
            value = str(value)
            if len(value) > PROPERTY_CHARACTERS:
                self.dropped[NUMBER_TOO_LONG] += 1
                return
        elif type(value) is float and not math.isfinite(value):
            self.dropped[NOT_FINITE] += 1
            return
        elif type(value) is RawNumber:
            if len(value.text) > PROPERTY_CHARACTERS:
                self.dropped[NUMBER_TOO_LONG] += 1
                return
            value = value.text
        out[name] = value


# -- generated mappings ----------------------------------------------------------------------
PATHS = [
    "user",
    "n",
    "name",
    "meta",
    "meta.user",
    "meta.kind",
    "meta.at",
    "meta.secret",
    "list",
    "list.0",
    "list.1",
    "list.0.k",
    "a",
    "a.b",
    "a.b.c",
    "tags",
    "at",
    "id",
    "ID",
    "flag",
    "deep",
    "sdk",
    "meta.sdk",
]
RENAMES = ["x", "x.y", "full_name", "id", "Id", "m", "a.b", "q" * 1023]
SINGLE = st.sampled_from(PATHS)
ENCLOSING = st.sampled_from(
    [
        ["a", "a.b"],
        ["a.b", "a"],
        ["a.b", "a.b.c", "a"],
        ["a as x", "a.b as x.b"],
        ["meta as m", "meta.user as m.user", "meta.kind"],
        ["list", "list.0", "list.0.k"],
    ]
)
"""Columns inside columns, which the config allows: the enclosing column's value is kept."""
TEXT_COLUMNS = st.sampled_from(["user", "meta.user", "name", "meta.kind", "list.0", "n"]) | SINGLE
"""Columns that hold text in the loadable records half of the time, so items are common."""
TIME_COLUMNS = st.sampled_from(["at", "meta.at", "n"]) | SINGLE
USER_ID_COLUMNS = st.sampled_from(["sdk", "meta.sdk"]) | st.sampled_from(["n", "list.1"]) | SINGLE
"""Columns that hold user_ids in the loadable records half of the time."""


@st.composite
def mappings(draw) -> ColumnMapping:
    """A valid mapping of any API type over the columns the records use; what the config
    refuses (names two columns could both give, a listed column excluded) is not a mapping."""
    api_type = draw(st.sampled_from(list(ApiType)))
    api: dict[str, str] = {"api_type": api_type.value}
    if api_type is ApiType.ADD_ACCOUNT_PROPERTIES:
        api["account_id_column"] = draw(TEXT_COLUMNS)
    elif api_type in (ApiType.TRACK, ApiType.DELETE_USERS) and draw(st.booleans()):
        api["user_id_column"] = draw(USER_ID_COLUMNS)
    else:
        api["identity_column"] = draw(TEXT_COLUMNS)
    if api_type is ApiType.IDENTIFY:
        api["user_id_column"] = draw(USER_ID_COLUMNS)
        if draw(st.booleans()):
            api["timestamp_column"] = draw(TIME_COLUMNS)
    if api_type is ApiType.TRACK:
        if draw(st.booleans()):
            api["event_column"] = draw(TEXT_COLUMNS)
        else:
            api["event_name"] = draw(st.sampled_from(["Order Completed", "e" * 1024]))
        if draw(st.booleans()):
            api["timestamp_column"] = draw(TIME_COLUMNS)
        if draw(st.booleans()):
            api["idempotency_key_column"] = draw(TEXT_COLUMNS)
    entry = st.builds(
        lambda path, rename: path if rename is None else f"{path} as {rename}",
        SINGLE,
        st.none() | st.sampled_from(RENAMES),
    )
    listed = st.lists(entry, min_size=1, max_size=6)
    columns = draw(
        st.just(["*"])
        | listed
        | st.builds(lambda inside, more: inside + more, ENCLOSING, st.lists(entry, max_size=3))
    )
    api["property_columns"] = ", ".join(columns)
    api["exclude_columns"] = ", ".join(draw(st.lists(SINGLE, max_size=3)))
    try:
        config = parse_config(
            {"app_id": "11", "base_url": "https://heap.test", "api": api, "api_key": "k"}
        )
    except ConfigError:
        assume(False)
    return config.default_mapping


# -- generated records -----------------------------------------------------------------------
def nested(levels: int) -> Any:
    value: Any = "leaf"
    for level in range(levels):
        value = {"k": value} if level % 2 else [value]
    return value


TEXTS = st.sampled_from(
    [
        "",
        " ",
        "\u3000",
        "plain",
        "café ☕ 🙂",
        "x" * 255,
        "x" * 256,
        "y" * 1023,
        "y" * 1024,
        "2022-10-21T04:09:54.622Z",
        "2022-10-21 06:09:54+02:00",
        "2022/10/21",
        "12:00",
        "now",
        "0",
        "id",
        "\ud800",
    ]
) | st.text(max_size=6)
NUMBERS = (
    st.sampled_from(
        [
            0,
            -1,
            1666325394,
            1666325394622,
            2**53,
            2**53 + 1,
            -(2**63),
            10**1022,
            10**1023 - 1,
            -(10**1023 - 1),
            10**1023,
            10**1100,
            1.5,
            -0.0,
            1e300,
            2.0**53,
            2.0**53 - 1,
            RawNumber("1e400"),
            RawNumber("-1e400"),
            RawNumber("9" * 1023 + ".5"),
            RawNumber("9" * 5000),
        ]
    )
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
)
KEYS = st.sampled_from(
    ["user", "n", "name", "meta", "list", "a", "b", "c", "a.b", "b.c", "k", "kind", "at", "sdk"]
    + ["secret", "id", "ID", "iD", "flag", "tags", "deep", "0", "1", "", "x.", ".y"]
)
SCALARS = st.none() | st.booleans() | NUMBERS | TEXTS
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
) | st.sampled_from([DEEPEST - 3, DEEPEST - 1, DEEPEST, DEEPEST + 1, 300]).map(nested)
USER_IDS = (
    st.sampled_from(
        [0, 42, 2**53 - 1, 2**53, -1, 7.0, 7.5, 2.0**53, "0042", "0", "", " 1", "+1", "1e3", "12.0"]
        + ["١٢", "9" * 17, "0" * 20 + "1", "9" * 5000, True, RawNumber("1e400"), [1], {"a": 1}]
    )
    | st.integers(2**53 - 2, 2**53 + 1)
    | st.integers(2**53 - 2, 2**53 + 1).map(str)
    | st.integers()
    | st.text(alphabet="0123456789", max_size=18)
)
"""user_id values: in range and out of it, as numbers and as text, and what is neither."""
LOADABLE = st.fixed_dictionaries(
    {
        "user": st.sampled_from(["u-1", "jane@example.com", 42, 2.5, "x" * 255, "x" * 256]),
        "n": st.integers(0, 10**6),
        "name": st.sampled_from(["Jane", "Order Completed", "e" * 1024, "e" * 1025]),
        "sdk": USER_IDS,
        "meta": st.fixed_dictionaries(
            {
                "user": st.just("u-2"),
                "kind": st.just("Signed Up"),
                "at": st.just(1666325394),
                "sdk": USER_IDS,
            }
        ),
        "list": st.just(["a", {"k": 1}, None]),
        "at": st.sampled_from(["2022-10-21T04:09:54Z", 1666325394622, None]),
    }
)
COLLIDING = (
    st.builds(lambda one, other: {"a.b": one, "a": {"b": other}}, SCALARS, SCALARS)
    | st.builds(
        lambda one, other, third: {"a": {"b.c": one, "b": {"c": other}}, "a.b": {"c": third}},
        SCALARS,
        SCALARS,
        SCALARS,
    )
    | st.builds(lambda one, other: {"a": {"b": {"c.k": one, "c": {"k": other}}}}, SCALARS, SCALARS)
)
"""Keys with dots that give one property name two values."""
RESERVED = st.dictionaries(st.sampled_from(["id", "ID", "Id", "iD"]), SCALARS, min_size=1)
DEEP_LISTS = st.builds(
    lambda key, levels: {key: ["x", nested(levels)]},
    st.sampled_from(["tags", "list", "deep"]),
    st.sampled_from([DEEPEST - 3, DEEPEST - 2, DEEPEST - 1]),
)
"""A list column whose objects reach the depth limit, or one level past it."""
RECORDS = st.builds(
    lambda base, special, extra: {**base, **special, **extra},
    st.just({}) | LOADABLE | LOADABLE | LOADABLE,
    st.just({}) | COLLIDING | RESERVED | DEEP_LISTS,
    st.dictionaries(KEYS, VALUES, max_size=5),
)
"""Mostly a record the mappings can load, with other keys over it: both outcomes are common."""


def outcome(produce, data: dict) -> tuple[str, Any]:
    try:
        return "item", produce(data, STREAM)
    except (InvalidRecord, Invalid) as invalid:
        return "invalid", str(invalid)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mapping=mappings(), records=st.lists(RECORDS, min_size=1, max_size=8))
def test_every_generated_mapping_gives_the_items_the_rules_say_on_generated_records(
    mapping, records
):
    transformer = RecordTransformer(mapping, now=lambda: NOW)
    model = Model(mapping)
    for data in records:
        got, expected = outcome(transformer.transform, data), outcome(model.item, data)
        assert got == expected
        if got[0] == "item":
            assert list(got[1]) == list(expected[1]), "the fields in the documented order"
        assert transformer.stats.truncated_values == model.truncated
        assert transformer.stats.dropped_properties == {
            reason: count for reason, count in model.dropped.items() if count
        }
