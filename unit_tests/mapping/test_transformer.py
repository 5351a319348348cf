"""The transformation rules (README "Transformation rules"), one test per rule, plus 0.1.0's own
unit-test cases (adapted where 0.1.0 was wrong, with the reason) and the seed's three examples."""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import orjson
import pendulum
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from destination_heap_analytics.airbyte.input_reader import read_messages
from destination_heap_analytics.config.settings import ApiType, ConfigError, parse_config
from destination_heap_analytics.counters import InputStats, TransformStats
from destination_heap_analytics.mapping.transformer import (
    COLLIDING_NAME,
    EMPTY_NAME,
    ENCLOSED_COLLISION,
    ITEM_FIELD_NAMES,
    ITEM_SHAPES,
    MAX_NESTING_DEPTH,
    NAME_TOO_LONG,
    NUMBER_TOO_LONG,
    TOO_DEEP,
    InvalidRecord,
    ItemField,
    RecordTransformer,
    Unset,
    compile_getter,
    normalise_timestamp,
    now_iso8601,
    put_value,
    record_hash,
    stream_key,
)

USERS = stream_key(None, "users")

FIXED_NOW = "2023-05-21T12:00:00Z"


class Make(RecordTransformer):
    """A transformer callable on data alone (stream `users`), to keep the tests short."""

    def __call__(self, data: dict) -> dict:
        return self.transform(data, USERS)


def transformer(api_type: str, **api: str) -> Make:
    api = {"api_type": api_type, "property_columns": "*", **api}
    config = parse_config(
        {"app_id": "11", "base_url": "https://heapanalytics.com", "api": api, "api_key": "k"}
    )
    return Make(config.default_mapping, now=lambda: FIXED_NOW)


def track(**api: str) -> Make:
    api.setdefault("event_column", "event")
    api.setdefault("identity_column", "identity")
    return transformer("track", **api)


def properties_of(data: dict, columns: str) -> dict:
    """Properties of an account item keyed by a column outside `data`, dropped from the result."""
    make = transformer("add_account_properties", account_id_column="acc", property_columns=columns)
    properties = make({"acc": "A1", **data})["properties"]
    properties.pop("acc", None)
    return properties


def invalid_reason(make: RecordTransformer, data: dict) -> str:
    with pytest.raises(InvalidRecord) as raised:
        make.transform(data, USERS)
    return raised.value.reason


# -- The seed's three worked examples, exactly (sample_files/seed-examples.json) -----------------
SEED_EXAMPLES = json.loads(
    (Path(__file__).parents[2] / "sample_files" / "seed-examples.json").read_text()
)


@pytest.mark.parametrize("example", SEED_EXAMPLES, ids=[e["name"] for e in SEED_EXAMPLES])
def test_the_seeds_examples_exactly(example):
    config = {"app_id": "11", "base_url": "https://heap.test", "api": example["api"]}
    make = Make(parse_config(config).default_mapping, now=lambda: FIXED_NOW)
    item = make(example["record"])
    if example["api"]["api_type"] == "track":
        assert item.pop("idempotency_key") == record_hash(example["record"], USERS)
    assert item == example["item"]


# -- Column paths --------------------------------------------------------------------------------
def test_dot_path_reaches_nested_objects_and_list_elements_by_index():
    data = {"visits": [{"date": "2022-01-01"}, {"date": "2022-02-02"}], "a": {"b": {"c": 7}}}
    assert properties_of(data, "visits.1.date,a.b.c") == {"visits.1.date": "2022-02-02", "a.b.c": 7}


def test_column_names_are_trimmed_and_case_sensitive():
    data = {"Name": "upper", "name": "lower"}
    assert properties_of(data, "  name ,  Name") == {"name": "lower", "Name": "upper"}
    assert properties_of(data, "NAME") == {}


def test_a_top_level_key_containing_dots_matches_the_whole_path():
    assert properties_of({"a.b": 1}, "a.b") == {"a.b": 1}


def test_index_out_of_range_or_index_on_object_is_missing():
    assert properties_of({"l": [1], "o": {"x": 1}}, "l.5,o.0,l.x") == {}


# -- property_columns ------------------------------------------------------------------------------
def test_star_flattens_every_leaf_with_dotted_keys_and_list_indexes():
    item = transformer("add_account_properties", account_id_column="acc", property_columns="*")(
        {"acc": "A1", "a": {"b": 1, "c": [True, {"d": "x"}]}, "e": "f", "empty": {}, "none": []}
    )
    assert item["properties"] == {"acc": "A1", "a.b": 1, "a.c.0": True, "a.c.1.d": "x", "e": "f"}


def test_explicit_object_column_contributes_its_leaves_under_its_prefix():
    data = {"identities": {"provider": "auth0", "flags": {"social": False}, "gone": None}}
    assert properties_of(data, "identities") == {
        "identities.provider": "auth0",
        "identities.flags.social": False,
    }


def test_explicit_list_column_is_joined_with_double_pipes():
    data = {"flavours": ["vanilla", "chocolate", None, 3, True, {"k": 1}]}
    assert properties_of(data, "flavours") == {"flavours": 'vanilla||chocolate||3||true||{"k":1}'}


def test_values_are_strings_numbers_and_json_booleans():
    data = {"s": "text", "i": 42, "f": 1.5, "t": True, "n": False}
    assert properties_of(data, "s,i,f,t,n") == {
        "s": "text",
        "i": 42,
        "f": 1.5,
        "t": True,
        "n": False,
    }


def test_nulls_and_missing_columns_are_dropped():
    assert properties_of({"a": None, "b": 1}, "a,b,c") == {"b": 1}
    assert properties_of({"a": None, "b": {"c": None}}, "*") == {}


def test_strings_longer_than_1023_are_cut_and_counted():
    make = transformer("add_user_properties", identity_column="id", property_columns="*")
    item = make({"id": "u", "long": "x" * 1500, "joined": ["y" * 600, "z" * 600]})
    assert item["properties"]["long"] == "x" * 1023
    assert make.stats.truncated_values == 1
    explicit = transformer("add_user_properties", identity_column="id", property_columns="joined")
    joined = explicit({"id": "u", "joined": ["y" * 600, "z" * 600]})["properties"]["joined"]
    assert len(joined) == 1023 and explicit.stats.truncated_values == 1


def test_user_property_named_id_is_dropped_and_counted():
    make = transformer("add_user_properties", identity_column="email", property_columns="*")
    item = make({"email": "a@b.c", "ID": 5, "plan": "pro"})
    assert item["properties"] == {"email": "a@b.c", "plan": "pro"}
    assert sum(make.stats.dropped_properties.values()) == 1


# -- identity / account_id ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, expected",
    [("alice@example.com", "alice@example.com"), (123, "123"), (12.0, "12"), (1.5, "1.5")],
)
def test_identity_is_a_string_or_a_number_as_text(value, expected):
    assert track()({"identity": value, "event": "e"})["identity"] == expected


@pytest.mark.parametrize(
    "data, reason_part",
    [
        ({"event": "e"}, "missing or null"),
        ({"identity": None, "event": "e"}, "missing or null"),
        ({"identity": "  ", "event": "e"}, "blank"),
        ({"identity": "", "event": "e"}, "blank"),
        ({"identity": True, "event": "e"}, "not a string or number"),
        ({"identity": {"a": 1}, "event": "e"}, "not a string or number"),
        ({"identity": "x" * 256, "event": "e"}, "longer than 255"),
    ],
)
def test_bad_identity_makes_the_record_invalid(data, reason_part):
    reason = invalid_reason(track(), data)
    assert reason_part in reason and reason.startswith("identity")


def test_identity_of_exactly_255_characters_is_kept_whole():
    assert track()({"identity": "x" * 255, "event": "e"})["identity"] == "x" * 255


def test_account_id_follows_the_identity_rules_without_length_cap():
    make = transformer("add_account_properties", account_id_column="acc", property_columns="*")
    assert make({"acc": 77})["account_id"] == "77"
    assert make({"acc": "y" * 400})["account_id"] == "y" * 400
    assert "missing or null" in invalid_reason(make, {"other": 1})


# -- event ----------------------------------------------------------------------------------------
def test_event_is_text_of_1_to_1024_characters():
    assert track()({"identity": "u", "event": 404})["event"] == "404"
    assert track()({"identity": "u", "event": "e" * 1024})["event"] == "e" * 1024
    assert "longer than 1024" in invalid_reason(track(), {"identity": "u", "event": "e" * 1025})
    assert "blank" in invalid_reason(track(), {"identity": "u", "event": ""})
    assert "missing" in invalid_reason(track(), {"identity": "u"})


# -- timestamp ------------------------------------------------------------------------------------
def test_no_timestamp_column_means_now_in_utc():
    assert track()({"identity": "u", "event": "e"})["timestamp"] == FIXED_NOW


@pytest.mark.parametrize("empty", [None, "", "missing"])
def test_empty_timestamp_value_means_now(empty):
    data = {"identity": "u", "event": "e"}
    if empty != "missing":
        data["ts"] = empty
    assert track(timestamp_column="ts")(data)["timestamp"] == FIXED_NOW


@pytest.mark.parametrize(
    "value", ["2022-10-21T04:09:54.622Z", "2022-10-26T03:06:59Z", "2022-10-21T04:09:54.1234567Z"]
)
def test_iso8601_utc_timestamps_with_z_pass_through_unchanged(value):
    assert (
        track(timestamp_column="ts")({"identity": "u", "event": "e", "ts": value})["timestamp"]
        == value
    )


@pytest.mark.parametrize(
    "value, expected",
    [
        (1666325394, "2022-10-21T04:09:54Z"),
        (1666325394.5, "2022-10-21T04:09:54.500Z"),
        (1666325394622, "2022-10-21T04:09:54.622Z"),
        (1666325394.000123, "2022-10-21T04:09:54.000123Z"),
        ("2017-03-10T22:21:56+00:00", "2017-03-10T22:21:56Z"),
        ("2022-10-21T06:09:54+02:00", "2022-10-21T04:09:54Z"),
        ("2022-10-21T04:09:54", "2022-10-21T04:09:54Z"),
        ("2022-10-21 04:09:54", "2022-10-21T04:09:54Z"),
        ("2022-10-21T04:09Z", "2022-10-21T04:09:00Z"),
        (" 2022-10-21T04:09:54.622Z ", "2022-10-21T04:09:54.622Z"),
        ("2022/10/21", "2022-10-21T00:00:00Z"),
        ("2022-10-21", "2022-10-21T00:00:00Z"),
        ("20221021T040954Z", "2022-10-21T04:09:54Z"),
    ],
)
def test_epoch_numbers_and_other_date_strings_become_iso8601_utc(value, expected):
    assert normalise_timestamp(value) == expected
    item = track(timestamp_column="ts")({"identity": "u", "event": "e", "ts": value})
    assert item["timestamp"] == expected


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "now",
        "today",
        "12:00",
        "12:00:00Z",
        "T12:00",
        "1200",
        "2022",
        "2022-13-45",
        "P1D",
        "2022-10-21/2022-10-22",
        True,
        {"a": 1},
        [1],
        10**400,
        float("inf"),
    ],
)
def test_unreadable_timestamps_make_the_record_invalid(value):
    reason = invalid_reason(
        track(timestamp_column="ts"), {"identity": "u", "event": "e", "ts": value}
    )
    assert reason.startswith("ts is not a date-time")


CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3}|\.\d{6})?Z")
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
MOMENTS = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=OFFSETS
)


@settings(max_examples=300, deadline=None)
@given(moment=MOMENTS, separator=st.sampled_from(["T", " "]), naive=st.booleans())
def test_every_iso8601_form_becomes_the_same_instant_in_one_utc_form(moment, separator, naive):
    text = moment.replace(tzinfo=None).isoformat(sep=separator) if naive else moment.isoformat()
    instant = moment.replace(tzinfo=UTC) if naive else moment
    normalised = normalise_timestamp(text)
    assert normalised is not None and (CANONICAL.fullmatch(normalised) or normalised == text)
    assert datetime.fromisoformat(normalised) == instant


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=40))
def test_text_that_does_not_start_with_a_date_is_never_a_timestamp(text):
    assume(not re.match(r"\s*(\d{4}[-/]|\d{8})", text, re.ASCII))
    assert normalise_timestamp(text) is None


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(st.text(max_size=40), st.integers(), st.floats(), st.booleans()))
def test_any_accepted_timestamp_is_in_the_one_utc_form(value):
    normalised = normalise_timestamp(value)
    if normalised is not None:
        assert normalised.endswith("Z") and datetime.fromisoformat(normalised).tzinfo == UTC
        assert CANONICAL.fullmatch(normalised) or normalised == value.strip()


def test_now_is_the_current_time_in_iso8601_utc():
    before = datetime.now(UTC).replace(microsecond=0)
    now = now_iso8601()
    after = datetime.now(UTC)
    assert CANONICAL.fullmatch(now)
    assert before <= datetime.fromisoformat(now) <= after


def test_010_datetime_formatting_cases():
    # 0.1.0's test_utils cases for its formatter (pendulum's to_iso8601_string), through the
    # epoch conversion that now formats datetimes the same way.
    assert normalise_timestamp(pendulum.datetime(2022, 10, 26, 3, 6, 59).timestamp()) == (
        "2022-10-26T03:06:59Z"
    )


# -- idempotency key ------------------------------------------------------------------------------
def test_idempotency_key_is_stable_and_independent_of_key_order():
    make = track()
    a = make({"identity": "u", "event": "e", "x": {"p": 1, "q": 2}})
    b = make({"x": {"q": 2, "p": 1}, "event": "e", "identity": "u"})
    assert a["idempotency_key"] == b["idempotency_key"]
    assert len(a["idempotency_key"]) == 32


def test_idempotency_key_differs_by_stream_and_by_content():
    data = {"identity": "u", "event": "e"}
    make = track()
    assert make.transform(data, stream_key(None, "a")) != make.transform(
        data, stream_key(None, "b")
    )
    assert make.transform(data, stream_key("ns", "a")) != make.transform(
        data, stream_key(None, "a")
    )
    assert make(data)["idempotency_key"] != make({**data, "x": 1})["idempotency_key"]


def test_idempotency_key_column_is_used_when_configured():
    make = track(idempotency_key_column="meta.event_id")
    assert (
        make({"identity": "u", "event": "e", "meta": {"event_id": 991}})["idempotency_key"] == "991"
    )
    assert "meta.event_id is missing" in invalid_reason(make, {"identity": "u", "event": "e"})


def test_only_track_items_carry_an_idempotency_key():
    item = transformer("add_user_properties", identity_column="id", property_columns="*")(
        {"id": "u"}
    )
    assert set(item) == {"identity", "properties"}


# -- Reasons never contain values ------------------------------------------------------------------
def test_invalid_reasons_name_columns_but_never_values():
    marker = "MARKER-7f3a"
    cases = [
        {"identity": marker * 40, "event": "e"},
        {"identity": "u", "event": marker * 200},
        {"identity": "u", "event": "e", "ts": marker},
    ]
    for data in cases:
        assert marker not in invalid_reason(track(timestamp_column="ts"), data)


def test_transform_does_not_modify_the_record():
    data = copy.deepcopy(SEED_EXAMPLES[0]["record"])
    track(property_columns="*", identity_column="email", event_column="name")(data)
    assert data == SEED_EXAMPLES[0]["record"]


# -- 0.1.0's unit-test cases (test_utils.py, test_parse_json.py), adapted ---
OLD_RECORD = {
    "user_id": "4",
    "email": "u4@example.com",
    "family_name": "Smith",
    "created_at": "2022-10-21T04:09:54.622Z",
    "blocked": False,
    "car": {"year": None, "revisions": [{"changes": [{"price": 10}]}, {"changes": [{"price": 5}]}]},
    "visits": [{"useCoupon": True}],
    "myNulls": [None, 1, None, 3],
}


def test_010_flatten_cases_with_nulls_dropped():
    # 0.1.0 kept null leaves (and sent JSON null to Heap, which documents no null type); the
    # rule now drops them, so `car.year` and `myNulls.0`/`.2` are absent.
    props = properties_of(OLD_RECORD, "*")
    assert props["car.revisions.1.changes.0.price"] == 5
    assert props["visits.0.useCoupon"] is True
    assert props["myNulls.1"] == 1 and props["myNulls.3"] == 3
    assert "car.year" not in props and "myNulls.0" not in props


def test_010_selected_properties_keep_false_values():
    assert properties_of(OLD_RECORD, "blocked,family_name") == {
        "blocked": False,
        "family_name": "Smith",
    }


def test_010_wrong_case_columns_select_nothing():
    assert properties_of(OLD_RECORD, "uSeR_iD") == {}


def test_010_track_with_event_family_name_identity_email_timestamp_created_at():
    make = track(
        property_columns="*",
        event_column="family_name",
        identity_column="email",
        timestamp_column="created_at",
    )
    item = make(OLD_RECORD)
    assert (item["identity"], item["event"], item["timestamp"]) == (
        "u4@example.com",
        "Smith",
        "2022-10-21T04:09:54.622Z",
    )
    assert item["properties"]["user_id"] == "4"
    subset = track(
        property_columns="user_id,blocked", event_column="family_name", identity_column="email"
    )
    assert subset(OLD_RECORD)["properties"] == {"user_id": "4", "blocked": False}
    missing = track(property_columns="nope", event_column="family_name", identity_column="email")
    assert missing(OLD_RECORD)["properties"] == {}


def test_010_track_invalid_for_wrong_case_identity_or_missing_event():
    assert invalid_reason(track(event_column="family_name", identity_column="EMAIL"), OLD_RECORD)
    assert invalid_reason(track(event_column="nope", identity_column="email"), OLD_RECORD)


def test_010_falsy_identities_are_valid_now():
    # 0.1.0 checked required values by truthiness, so an identity of 0 was dropped; 0 is a
    # real identifier.
    assert track()({"identity": 0, "event": "e"})["identity"] == "0"


@pytest.mark.parametrize(
    "api_type, key_column, out_key",
    [
        ("add_user_properties", "identity_column", "identity"),
        ("add_account_properties", "account_id_column", "account_id"),
    ],
)
def test_010_user_and_account_cases(api_type, key_column, out_key):
    make = transformer(api_type, property_columns="*", **{key_column: "user_id"})
    item = make(OLD_RECORD)
    assert item[out_key] == "4" and item["properties"]["family_name"] == "Smith"
    subset = transformer(api_type, property_columns="blocked", **{key_column: "user_id"})
    assert subset(OLD_RECORD)["properties"] == {"blocked": False}
    wrong_case = transformer(api_type, property_columns="*", **{key_column: "USER_ID"})
    assert invalid_reason(wrong_case, OLD_RECORD)


# -- values at the edges real sources produce --------------------------------------------------
BIG = 12345678901234567890123


def test_integers_beyond_2_53_keep_every_digit_as_text():
    data = {"small": 2**53, "big": BIG, "neg": -(2**53) - 1, "list": [BIG, 1]}
    assert properties_of(data, "small,big,neg,list") == {
        "small": 2**53,
        "big": "12345678901234567890123",
        "neg": "-9007199254740993",
        "list": "12345678901234567890123||1",
    }
    assert properties_of({"o": {"big": BIG + 1}}, "*") == {"o.big": "12345678901234567890124"}


def test_distinct_huge_ids_stay_distinct_identities_and_keys():
    make = track()
    first = make({"identity": BIG, "event": "e"})
    second = make({"identity": BIG + 1, "event": "e"})
    assert (first["identity"], second["identity"]) == (str(BIG), str(BIG + 1))
    assert first["idempotency_key"] != second["idempotency_key"]


@pytest.mark.parametrize("value", [1.2345678901234568e22, 2.0**53, -(2.0**53), 2.0**53 + 2])
def test_a_float_too_large_to_be_exact_is_not_an_identity(value):
    # 2**53 itself is also what 9007199254740993.0 parses to (issue 14.5).
    reason = invalid_reason(track(), {"identity": value, "event": "e"})
    assert reason == "identity is a number too large to be written exactly"


def test_a_float_identity_below_2_53_is_its_integer():
    assert track()({"identity": 2.0**53 - 1, "event": "e"})["identity"] == "9007199254740991"
    assert track()({"identity": -(2.0**53) + 1, "event": "e"})["identity"] == "-9007199254740991"


def test_an_integer_longer_than_a_property_value_is_dropped_and_counted():
    make = transformer("add_account_properties", account_id_column="acc", property_columns="*")
    item = make({"acc": "A", "huge": 10**1100, "ok": 10**1022})
    assert item["properties"] == {"acc": "A", "ok": str(10**1022)}
    assert make.stats.dropped_properties == {NUMBER_TOO_LONG: 1}


def test_integer_digits_are_counted_exactly_against_heaps_1023_characters():
    # Issue 14.5: the longest integer of 1023 digits was dropped (a bit bound off by one).
    largest = 10**1023 - 1
    make = transformer("add_account_properties", account_id_column="acc", property_columns="*")
    item = make({"acc": "A", "fits": largest, "one_more": 10**1023, "negative": -largest})
    assert item["properties"] == {"acc": "A", "fits": str(largest)}
    assert make.stats.dropped_properties == {NUMBER_TOO_LONG: 2}  # the sign is a character too
    assert transformer("add_account_properties", account_id_column="acc")({"acc": largest})[
        "account_id"
    ] == str(largest)
    reason = invalid_reason(
        transformer("add_account_properties", account_id_column="acc"), {"acc": 10**1023}
    )
    assert reason == "acc is a number too large to be written exactly"


@pytest.mark.parametrize("empty", [[], [None], [None, None]])
def test_an_explicit_list_column_with_nothing_in_it_sends_nothing(empty):
    assert properties_of({"tags": empty, "b": 1}, "tags,b") == {"b": 1}


def nested(depth: int, leaf: object = 1) -> object:
    """`depth` containers around `leaf`, alternating objects and lists."""
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


@pytest.mark.parametrize("depth", [MAX_NESTING_DEPTH, MAX_NESTING_DEPTH + 1, 1000, 5000])
def test_deep_records_are_invalid_beyond_the_limit_and_never_crash(depth):
    data = {"identity": "u", "event": "e", "deep": nested(depth - 1)}  # the record is one more
    for make in (track(property_columns="*"), track(property_columns="deep"), track()):
        if depth <= MAX_NESTING_DEPTH:
            assert make(data)["identity"] == "u"
        else:
            assert invalid_reason(make, data) == TOO_DEEP


@pytest.mark.parametrize("extra_levels", [0, 1])
@pytest.mark.parametrize("exclusion", ["", "tags.0.none"])
def test_an_object_in_a_list_column_is_held_to_the_depth_limit_as_under_star(
    extra_levels, exclusion
):
    # orjson's own limit counts from the value it writes, so an object in a list column could
    # reach 2 levels deeper than the limit, and only without an exclusion under the column.
    element = nested(MAX_NESTING_DEPTH - 2 + extra_levels)  # the record and the list: 2 more
    data = {"acc": "A", "tags": ["x", element]}
    api = {"account_id_column": "acc", "exclude_columns": exclusion}
    for columns in ("tags", "*"):
        make = transformer("add_account_properties", property_columns=columns, **api)
        if extra_levels:
            assert invalid_reason(make, data) == TOO_DEEP
        else:
            assert make(data)["account_id"] == "A"


def test_star_resolves_name_collisions_the_same_way_in_any_key_order():
    make = transformer("add_account_properties", account_id_column="acc", property_columns="*")
    one = make({"acc": "A", "a.b": "literal", "a": {"b": "nested"}})
    other = make({"a": {"b": "nested"}, "a.b": "literal", "acc": "A"})
    assert one["properties"] == other["properties"] == {"acc": "A", "a.b": "literal"}
    assert make.stats.dropped_properties == {COLLIDING_NAME: 2}


def test_a_null_never_wins_a_name_collision():
    assert properties_of({"a.b": None, "a": {"b": 2}}, "*") == {"a.b": 2}


def test_empty_key_names_are_dropped_and_counted():
    make = transformer("add_account_properties", account_id_column="acc", property_columns="*")
    item = make({"acc": "A", "": 1, "x": {"": 2, "y": 3}, "z": {"": {"w": 4}}})
    assert item["properties"] == {"acc": "A", "x.y": 3}
    assert make.stats.dropped_properties == {EMPTY_NAME: 3}


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.builds(lambda char, n: char * n, st.characters(), st.integers(1000, 1500)),
    st.sampled_from(["", ".", "a.b", "2022-10-21T04:09:54Z", "ID", "id"]),
)
KEYS = st.one_of(st.text(max_size=8), st.sampled_from(["", "a", "b", "a.b", "0", "id", "."]))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)
    ),
    max_leaves=25,
)
COLUMN_FORMS = ["*", "a", "a.b", "a.0", "b,a.b,a", "0,a.b.c"]


@functools.cache
def robustness_transformer(api_type: str, columns: str, key_column: str) -> Make:
    api = {"api_type": api_type, "property_columns": columns}
    if api_type == "track":
        api.update(identity_column=key_column, event_column="b", timestamp_column="a.b")
    elif api_type == "add_user_properties":
        api.update(identity_column=key_column)
    else:
        api.update(account_id_column=key_column)
    config = {"app_id": "1", "base_url": "https://heap.test", "api": api}
    return Make(parse_config(config).default_mapping, now=lambda: FIXED_NOW)


@settings(max_examples=150, deadline=None)
@given(
    data=st.dictionaries(KEYS, JSON_VALUES, max_size=6),
    api_type=st.sampled_from(["track", "add_user_properties", "add_account_properties"]),
    columns=st.sampled_from(COLUMN_FORMS),
    key_column=st.sampled_from(["a", "a.b", "b", "a.0"]),
)
def test_any_json_record_gives_a_valid_heap_item_or_an_invalid_reason(
    data, api_type, columns, key_column
):
    make = robustness_transformer(api_type, columns, key_column)
    try:
        item = make(data)
    except InvalidRecord as invalid:
        rule_words = invalid.reason.split()  # a value "null" is no leak in "missing or null"
        assert invalid.reason and not any(
            isinstance(v, str) and len(v) > 3 and v in invalid.reason and v not in rule_words
            for v in data.values()
        )
        if invalid.column is None:
            assert invalid.rule == invalid.reason
        else:  # a column's rule: the column, then the rule, as the log and the bucket show them
            assert invalid.column in {key_column, "b", "a.b"}
            assert invalid.reason == f"{invalid.column} {invalid.rule}"
        return
    orjson.dumps(item)  # what the client sends must serialise
    for name, value in item["properties"].items():
        assert name and "" not in name.split(".") and len(name) <= 1023
        assert type(value) in (str, int, float, bool)
        assert type(value) is not int or abs(value) <= 2**53
        assert type(value) is not str or len(value) <= 1023


# -- renames, exclusions and a constant event name (per-stream mappings) ----------------------
def test_as_sends_a_column_under_a_new_property_name():
    data = {
        "plan": "pro",
        "profile": {"city": "Oslo", "zip": "0150"},
        "tags": ["a", "b"],
        "total": 12.5,
    }
    columns = "plan as subscription_plan, profile as p, tags as labels, total, profile.city"
    assert properties_of(data, columns) == {
        "subscription_plan": "pro",
        "p.city": "Oslo",
        "p.zip": "0150",
        "labels": "a||b",
        "total": 12.5,
        "profile.city": "Oslo",
    }


def test_exclusions_remove_paths_from_star_at_any_depth():
    data = {
        "plan": "pro",
        "secret": {"token": "t", "nested": {"deeper": 1}},
        "internal": {"notes": "n", "ok": True},
        "secret.literal": "also under secret",
        "notes": "kept: only internal.notes is excluded",
    }
    make = transformer(
        "add_account_properties",
        account_id_column="plan",
        property_columns="*",
        exclude_columns="secret, internal.notes",
    )
    assert make(data)["properties"] == {
        "plan": "pro",
        "internal.ok": True,
        "notes": "kept: only internal.notes is excluded",
    }


def test_exclusions_apply_under_object_and_list_columns_even_when_renamed():
    data = {
        "profile": {"city": "Oslo", "ssn": "123", "card": {"number": "4111"}},
        "orders": [{"id": 1, "card": "4111"}, {"id": 2, "card": "4242"}],
    }
    make = transformer(
        "add_account_properties",
        account_id_column="profile.city",
        property_columns="profile as p, orders",
        exclude_columns="profile.ssn, profile.card, orders.0.card, orders.1.card",
    )
    assert make(data)["properties"] == {"p.city": "Oslo", "orders": '{"id":1}||{"id":2}'}


def test_a_constant_event_name_replaces_the_event_column():
    make = transformer(
        "track", identity_column="user", event_name="Order Completed", property_columns="*"
    )
    item = make({"user": "u1", "event": "ignored"})
    assert item["event"] == "Order Completed"
    assert item["properties"] == {"user": "u1", "event": "ignored"}


# -- Numbers JSON allows and no Python number holds (issue 14.4-14.6) --------------------------
def read_record(line: str) -> dict:
    """The record data of one stdin line, through the connector's own reader: how a number
    literal reaches the transformer is part of the rule."""
    stats = InputStats()
    messages = list(read_messages([line.encode()], stats, logging.getLogger("test")))
    assert stats.unparseable_lines == 0, "a valid JSON line is a readable record"
    (message,) = messages
    return message.record.data


def number_line(column: str, literal: str, **other: str) -> str:
    fields = {"identity": '"u"', "event": '"e"', **other, column: literal}
    data = ",".join(f'"{key}":{value}' for key, value in fields.items())
    return '{"type":"RECORD","record":{"stream":"users","emitted_at":1,"data":{' + data + "}}}"


def digits(count: int, seed: int) -> str:
    """`count` digits, the first not 0, from a seed (hypothesis shrinks the seed, not a string
    of thousands of characters)."""
    body = str(seed) * (count // max(len(str(seed)), 1) + 1)
    return ("1" + body)[:count]


sign = st.sampled_from(["", "-"])
INTEGER_LITERALS = st.one_of(
    st.integers(-(10**25), 10**25).map(str),
    st.builds(
        lambda minus, count, seed: minus + digits(count, seed),
        sign,
        st.sampled_from([15, 16, 17, 19, 20, 300, 1022, 1023, 1024, 4300, 4301, 5000, 6000]),
        st.integers(0, 10**6),
    ),
    st.sampled_from(["0", "-0", str(2**53), str(2**53 + 1), str(10**1023 - 1)]),
)
FLOAT_LITERALS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(
        [
            "1e308",
            "1.7976931348623157e308",
            "1.8e308",
            "1e400",
            "-1e400",
            "1E400",
            "1e-400",
            "-1e-400",
            "0.0",
            "-0.0",
            "9007199254740992.0",
            "9007199254740993.0",
            "9007199254740991.0",
        ]
    ),
    st.builds(
        lambda minus, mantissa, exponent: f"{minus}{mantissa}e{exponent}",
        sign,
        st.integers(1, 10**6),
        st.integers(300, 5000),
    ),
    st.builds(
        lambda minus, count, seed: f"{minus}{digits(count, seed)}.5",
        sign,
        st.sampled_from([300, 308, 309, 310, 1020, 1100, 5000]),
        st.integers(0, 10**6),
    ),
)
NUMBER_LITERALS = INTEGER_LITERALS | FLOAT_LITERALS


def is_integer_literal(literal: str) -> bool:
    return not any(char in literal for char in ".eE")


def value_of(literal: str) -> tuple[str, object]:
    """What a literal means, as the rules see it: an integer exactly; a float as the double it
    rounds to (-0.0 and 0.0 apart, as JSON writes them); beyond a double's range, the text."""
    if is_integer_literal(literal):
        return "integer", Decimal(literal)
    number = float(literal)
    if math.isinf(number):
        return "text", literal
    return "float", repr(number)


def integer_text_of(literal: str) -> str:
    return "0" if literal == "-0" else literal


@settings(max_examples=300, deadline=None)
@given(first=NUMBER_LITERALS, second=NUMBER_LITERALS, same=st.booleans())
def test_two_records_share_an_idempotency_key_only_when_their_numbers_are_equal(
    first, second, same
):
    """Issue 14.4-14.6: `1e400`, `-1e400` and `null` gave one key; a 5,000-digit integer lost
    its line. Any number, anywhere in the record, keeps records apart."""
    second = first if same else second
    make = track(property_columns="identity")
    keys = [
        make(read_record(number_line("x", literal)))["idempotency_key"]
        for literal in (first, second)
    ]
    assert (keys[0] == keys[1]) == (value_of(first) == value_of(second))
    lookalikes = ["null", json.dumps(first), json.dumps({"text": first})]
    for other in lookalikes:  # the string of the digits, and the object a dataclass would be
        assert make(read_record(number_line("x", other)))["idempotency_key"] != keys[0]


@settings(max_examples=300, deadline=None)
@given(literal=NUMBER_LITERALS)
def test_a_number_property_is_exact_or_dropped_and_counted(literal):
    make = transformer("add_account_properties", account_id_column="acc", property_columns="*")
    properties = make(read_record(number_line("x", literal, acc='"A"')))["properties"]
    kind, value = value_of(literal)
    if kind == "float":
        assert repr(properties["x"]) == value
        return
    text = integer_text_of(literal) if kind == "integer" else literal
    if kind == "integer" and abs(value) <= 2**53:
        assert properties["x"] == int(text)
    elif len(text) <= 1023:
        assert properties["x"] == text, "sent as its exact text"
    else:
        assert "x" not in properties
        assert make.stats.dropped_properties == {NUMBER_TOO_LONG: 1}


@settings(max_examples=300, deadline=None)
@given(literal=NUMBER_LITERALS)
def test_a_number_identity_is_its_exact_text_or_the_record_is_invalid(literal):
    make = track()
    data = read_record(number_line("identity", literal))
    kind, value = value_of(literal)
    expected = None
    if kind == "integer" and len(integer_text_of(literal)) <= 255:
        expected = integer_text_of(literal)
    elif kind == "float":
        number = float(literal)
        if not number.is_integer():
            expected = repr(number)
        elif abs(number) < 2**53:
            expected = str(int(number))
    if expected is None:
        assert invalid_reason(make, data).startswith("identity is ")
    else:
        assert make(data)["identity"] == expected


@settings(max_examples=100, deadline=None)
@given(literal=NUMBER_LITERALS)
def test_a_number_beyond_a_doubles_range_is_never_a_timestamp(literal):
    make = track(timestamp_column="at")
    data = read_record(number_line("at", literal))
    if value_of(literal)[0] == "text":
        assert invalid_reason(make, data) == "at is not a date-time (ISO 8601, date text or epoch)"
    else:
        try:
            assert make(data)["timestamp"].endswith("Z")
        except InvalidRecord as invalid:
            assert invalid.reason.startswith("at is ")


def test_numbers_beyond_a_doubles_range_in_lists_and_nested_records_stay_exact():
    data = read_record(number_line("x", '{"tags": [1e400, "a"], "big": -1e400}'))
    assert properties_of(data, "x.tags, x.big") == {"x.tags": "1e400||a", "x.big": "-1e400"}
    keys = {
        track(property_columns="identity")(read_record(number_line("x", literal)))[
            "idempotency_key"
        ]
        for literal in (
            "[1e400]",
            "[-1e400]",
            "[null]",
            '{"a": 1e400, "b": 2e400}',
            "[1e400, 12345678901234567890]",
        )
    }
    assert len(keys) == 5


# -- Names two listed columns give (issue 14.3) -----------------------------------------------
def test_a_column_inside_another_keeps_the_outer_columns_value_and_counts_the_other():
    make = transformer("add_account_properties", account_id_column="acc", property_columns="a.b, a")
    item = make({"acc": "A", "a": {"b.c": "literal", "b": {"c": "nested", "d": 1}}})
    assert item["properties"] == {"a.b.c": "literal", "a.b.d": 1}
    assert make.stats.dropped_properties == {COLLIDING_NAME: 1, ENCLOSED_COLLISION: 1}


def test_a_column_inside_another_that_agrees_counts_nothing():
    make = transformer("add_account_properties", account_id_column="acc", property_columns="a, a.b")
    assert make({"acc": "A", "a": {"b": {"c": 1}, "d": [2, 3]}})["properties"] == {
        "a.b.c": 1,
        "a.d.0": 2,
        "a.d.1": 3,
    }
    assert make.stats.dropped_properties == {}


PATH_PARTS = st.sampled_from(["a", "b", "c"])
NAME_PARTS = st.sampled_from(["a", "b", "c", "x"])
dotted = lambda parts: st.lists(parts, min_size=1, max_size=3).map(".".join)  # noqa: E731
ENTRIES = st.lists(
    st.tuples(dotted(PATH_PARTS), st.none() | dotted(NAME_PARTS)).map(
        lambda pair: pair[0] if pair[1] is None else f"{pair[0]} as {pair[1]}"
    ),
    min_size=1,
    max_size=4,
)
NESTED_ENTRIES = st.builds(
    lambda outer, inner, name: (
        [f"{outer} as {name}", f"{outer}.{inner} as {name}.{inner}"]
        if name
        else [f"{outer}.{inner}", outer]
    ),
    st.sampled_from(["a", "a.b"]) | dotted(PATH_PARTS),
    st.sampled_from(["b", "c"]) | dotted(PATH_PARTS),
    st.sampled_from([None, "x", "a.x"]),
)
"""Columns inside columns, which are allowed: where keys with dots make them disagree."""
NESTED_EXAMPLES = st.sampled_from(
    [["a.b", "a"], ["a as x", "a.b as x.b"], ["a.b.c", "a.b"], ["a.b", "a.b.c", "a", "c"]]
)
RECORD_KEYS = st.sampled_from(["a", "b", "c", "b.c", "a.b", "c.a"])
LEAVES = (
    st.integers(0, 9) | st.sampled_from(["s", True, None]) | st.lists(st.integers(0, 9), max_size=2)
)
RECORD_VALUES = st.recursive(
    LEAVES, lambda inner: st.dictionaries(RECORD_KEYS, inner, max_size=3), max_leaves=10
)
DISAGREEING = st.builds(
    lambda first, second, third: {"a": {"b.c": first, "b": {"c": second}}, "a.b": {"c": third}},
    LEAVES,
    LEAVES,
    LEAVES,
) | st.builds(
    lambda first, second: {"a": {"b": {"c.a": first, "c": {"a": second}}}}, LEAVES, LEAVES
)
"""Shapes where a dotted key and a nested object give one name two values."""


def encloses(outer, inner) -> bool:
    rest = inner.name[len(outer.name) :]
    return inner.name.startswith(outer.name + ".") and inner.path.name == outer.path.name + rest


@settings(max_examples=400, deadline=None)
@given(
    entries=ENTRIES
    | NESTED_ENTRIES
    | NESTED_EXAMPLES
    | st.tuples(NESTED_ENTRIES, ENTRIES).map(lambda pair: pair[0] + pair[1]),
    data=st.dictionaries(RECORD_KEYS, RECORD_VALUES, max_size=4) | DISAGREEING,
)
def test_no_property_is_ever_overwritten_silently(entries, data):
    """Each listed column's properties, computed alone, all reach the item: where two give one
    name different values, the config was refused, or the enclosing column's value is kept
    and the other counted."""
    api = {"api_type": "add_account_properties", "account_id_column": "acc"}
    raw = {
        "app_id": "1",
        "base_url": "https://heap.test",
        "api": {**api, "property_columns": ", ".join(entries)},
    }
    try:
        mapping = parse_config(raw).default_mapping
    except ConfigError as error:
        assert "give the same property name" in str(error)
        return
    make = Make(mapping, now=lambda: FIXED_NOW)
    item = make({"acc": "A", **data})
    alone = {}
    for column in mapping.property_columns:
        produced: dict = {}
        put_value(
            produced,
            column.name,
            compile_getter(column.path)(data),
            TransformStats(),
            len(column.path.segments) + 1,
            column.path.name,
        )
        alone[column] = produced
    expected_collisions = 0
    for name in set().union(*alone.values()):
        givers = [column for column in mapping.property_columns if name in alone[column]]
        outer = givers[0]
        assert all(encloses(outer, other) for other in givers[1:]), "the config was refused"
        kept = alone[outer][name]
        assert item["properties"][name] == kept and type(item["properties"][name]) is type(kept)
        expected_collisions += sum(
            1
            for other in givers[1:]
            if (alone[other][name], type(alone[other][name])) != (kept, type(kept))
        )
    assert set(item["properties"]) == set().union(*alone.values())
    assert make.stats.dropped_properties.get(ENCLOSED_COLLISION, 0) == expected_collisions
    reordered = {key: data[key] for key in reversed(list(data))}
    assert make({"acc": "A", **reordered})["properties"] == item["properties"]


# -- the item table (ITEM_SHAPES) -----------------------------------------------------------
CONFIGURED = {
    "identity_column": "who",
    "user_id_column": "sdk",
    "event_column": "what",
    "timestamp_column": "when",
    "idempotency_key_column": "key",
    "account_id_column": "who",
}


def alternatives(item_field: ItemField) -> list[ItemField]:
    """The field and those sent in its place, in order."""
    chain: list[ItemField] = []
    current: ItemField | None = item_field
    while current is not None:
        chain.append(current)
        current = current.instead
    return chain


def config_with(api_type: ApiType, settings: dict[str, str]) -> dict:
    api = {"api_type": api_type.value, "property_columns": "*", **settings}
    return {"app_id": "1", "base_url": "https://heap.test", "api": api, "api_key": "k"}


@pytest.mark.parametrize("api_type", list(ApiType))
def test_the_config_requires_exactly_the_columns_the_item_table_cannot_do_without(api_type):
    """For each field: each of its alternatives alone is a valid mapping whose items carry
    that alternative; none of them is refused, naming the column, unless the table says what
    the field holds without one."""
    shape = ITEM_SHAPES[api_type]
    for position, item_field in enumerate(shape.fields):
        others: dict[str, str] = {}
        for other in shape.fields[:position] + shape.fields[position + 1 :]:
            if other.column is not None:
                others[other.column] = CONFIGURED[other.column]
        for chosen in alternatives(item_field):
            if chosen.column is None:
                continue
            mapping = parse_config(
                config_with(api_type, {**others, chosen.column: CONFIGURED[chosen.column]})
            ).default_mapping
            assert shape.fields_for(mapping)[position] is chosen
        if item_field.column is None:
            continue
        if item_field.unset is Unset.EVENT_NAME:
            others["event_name"] = "Constant"
        if item_field.unset in (Unset.REQUIRED, Unset.INSTEAD):
            with pytest.raises(ConfigError, match=item_field.column):
                parse_config(config_with(api_type, others))
        else:
            mapping = parse_config(config_with(api_type, others)).default_mapping
            assert getattr(mapping, item_field.column) is None


ITEMS = {
    ApiType.TRACK: (
        {"identity_column": "who", "event_column": "what"},
        ("identity", "event", "timestamp", "properties", "idempotency_key"),
    ),
    ApiType.ADD_USER_PROPERTIES: ({"identity_column": "who"}, ("identity", "properties")),
    ApiType.ADD_ACCOUNT_PROPERTIES: ({"account_id_column": "who"}, ("account_id", "properties")),
    ApiType.IDENTIFY: (
        {"identity_column": "who", "user_id_column": "sdk", "timestamp_column": "when"},
        ("identity", "user_id", "timestamp"),
    ),
    ApiType.DELETE_USERS: ({"user_id_column": "sdk"}, ("user_id",)),
}
"""Each API type's item as README's request bodies show it."""


@pytest.mark.parametrize("api_type", list(ApiType))
def test_an_item_has_the_fields_of_its_api_type_in_the_documented_order(api_type):
    columns, fields = ITEMS[api_type]
    make = transformer(api_type.value, **columns)
    item = make({"who": "u", "what": "e", "sdk": 7, "when": 1666325394, "plan": "pro"})
    assert tuple(item) == fields
    assert set(fields) <= set(ITEM_SHAPES[api_type].names)
    if "properties" in fields:
        assert item["properties"]["plan"] == "pro"


def test_every_field_a_dry_run_may_name_is_a_field_of_some_item():
    named = {name for _, fields in ITEMS.values() for name in fields}
    assert ITEM_FIELD_NAMES == named


def test_a_flattened_name_longer_than_a_property_name_is_dropped_and_counted():
    make = transformer("add_account_properties", account_id_column="acc", property_columns="*")
    item = make({"acc": "A", "k" * 1023: 1, "k" * 1024: 2})
    assert item["properties"] == {"acc": "A", "k" * 1023: 1}
    assert make.stats.dropped_properties == {NAME_TOO_LONG: 1}
    assert NAME_TOO_LONG == "property name longer than 1023 characters"


# -- user_id (track by user_id, identify, delete_users) ------------------------------------------
MAX_USER_ID = 2**53 - 1


def by_user_id(**api: str) -> Make:
    return transformer("track", event_column="event", user_id_column="sdk", **api)


def user_id_outcome(value: object) -> str | None:
    """The user_id an event is sent with, or None when the record is invalid."""
    try:
        return by_user_id()({"sdk": value, "event": "e"})["user_id"]
    except InvalidRecord as invalid:
        assert invalid.reason.startswith("sdk ")
        return None


@given(st.integers(0, MAX_USER_ID))
def test_a_user_id_in_range_is_its_decimal_text_from_an_int_a_float_or_text(number):
    assert user_id_outcome(number) == str(number)
    assert user_id_outcome(str(number)) == str(number)
    assert user_id_outcome("000" + str(number)) == str(number)
    if float(number) == number:  # every integer up to 2**53 - 1 is a float exactly
        assert user_id_outcome(float(number)) == str(number)


@given(st.integers().filter(lambda n: not 0 <= n <= MAX_USER_ID))
def test_an_integer_out_of_range_makes_the_record_invalid(number):
    assert user_id_outcome(number) is None
    assert user_id_outcome(str(number)) is None
    if abs(number) < 1e300:
        assert user_id_outcome(float(number)) is None


@given(st.floats().filter(lambda x: not (x.is_integer() and 0 <= x <= MAX_USER_ID)))
def test_a_float_that_is_not_an_integer_in_range_makes_the_record_invalid(number):
    assert user_id_outcome(number) is None


@given(st.text().filter(lambda t: not (t.isascii() and t.isdigit())))
def test_text_that_is_not_ascii_digits_makes_the_record_invalid(text):
    assert user_id_outcome(text) is None


@pytest.mark.parametrize(
    "value",
    [None, True, False, "", " 12", "12 ", "+12", "-0", "1e3", "12.0", "١٢", "0x1f", [1], {"a": 1}],
)
def test_other_user_id_values_make_the_record_invalid(value):
    assert user_id_outcome(value) is None


def test_a_user_id_beyond_a_double_or_of_thousands_of_digits_is_invalid_without_a_crash():
    lines = [
        '{"type":"RECORD","record":{"stream":"users","data":{"sdk":1e400,"event":"e"},"emitted_at":1}}',
        '{"type":"RECORD","record":{"stream":"users","data":{"sdk":'
        + "9" * 5000
        + ',"event":"e"},"emitted_at":1}}',
        '{"type":"RECORD","record":{"stream":"users","data":{"sdk":"'
        + "9" * 5000
        + '","event":"e"},"emitted_at":1}}',
    ]
    messages = list(read_messages(lines, InputStats(), logging.getLogger("test")))
    assert len(messages) == 3
    for message in messages:
        assert user_id_outcome(message.record.data["sdk"]) is None


def test_the_user_id_reasons_name_the_column_and_never_the_value():
    make = by_user_id()
    assert invalid_reason(make, {"event": "e"}) == "sdk is missing or null"
    reason = invalid_reason(make, {"sdk": "Zq9-123", "event": "e"})
    assert reason.startswith("sdk is not a user_id") and "Zq9" not in reason


def test_an_event_by_user_id_carries_user_id_and_never_identity():
    item = by_user_id(timestamp_column="at")(
        {"sdk": 42, "event": "Signed Up", "at": "2022-10-21", "identity": "x"}
    )
    assert list(item) == ["user_id", "event", "timestamp", "properties", "idempotency_key"]
    assert item["user_id"] == "42" and "identity" not in item


def identify(**api: str) -> Make:
    return transformer("identify", identity_column="email", user_id_column="sdk", **api)


def test_an_identify_item_is_the_identity_and_the_user_id():
    assert identify()({"email": "a@x.io", "sdk": 7.0, "other": 1}) == {
        "identity": "a@x.io",
        "user_id": "7",
    }


@pytest.mark.parametrize("at", [None, "", "  "])
def test_identify_leaves_an_empty_timestamp_out(at):
    make = identify(timestamp_column="at")
    assert "timestamp" not in make({"email": "a", "sdk": "1", "at": at})


def test_identify_sends_a_timestamp_in_the_one_utc_form_and_refuses_a_bad_one():
    make = identify(timestamp_column="at")
    item = make({"email": "a", "sdk": "1", "at": "2022-10-21T06:09:54+02:00"})
    assert item == {"identity": "a", "user_id": "1", "timestamp": "2022-10-21T04:09:54Z"}
    assert invalid_reason(make, {"email": "a", "sdk": "1", "at": "now"}).startswith("at is not")


@pytest.mark.parametrize(
    "data, reason",
    [
        ({"sdk": "1"}, "email is missing or null"),
        ({"email": "a" * 256, "sdk": "1"}, "email is longer than 255 characters"),
        ({"email": "a"}, "sdk is missing or null"),
        ({"email": "a", "sdk": -1}, "sdk is not a user_id"),
    ],
)
def test_identify_needs_both_a_valid_identity_and_a_valid_user_id(data, reason):
    assert invalid_reason(identify(), data).startswith(reason)


def deletion(**api: str) -> Make:
    config = parse_config(
        {
            "app_id": "11",
            "base_url": "https://heapanalytics.com",
            "api": {"api_type": "delete_users", **api},
            "api_key": "k",
        }
    )
    return Make(config.default_mapping, now=lambda: FIXED_NOW)


def test_a_deletion_is_the_user_alone_with_user_id_as_a_json_integer():
    assert deletion(identity_column="email")({"email": 12.0, "x": 1}) == {"identity": "12"}
    item = deletion(user_id_column="sdk")({"sdk": "0042", "x": 1})
    assert item == {"user_id": 42} and type(item["user_id"]) is int
    assert orjson.dumps(deletion(user_id_column="sdk")({"sdk": MAX_USER_ID})) == (
        b'{"user_id":9007199254740991}'
    )


def test_a_deletion_refuses_what_identity_and_user_id_refuse():
    assert invalid_reason(deletion(identity_column="email"), {"email": " "}) == "email is blank"
    assert invalid_reason(deletion(user_id_column="sdk"), {"sdk": 2**53}).startswith(
        "sdk is not a user_id"
    )
