"""The one-time report of configured columns the data never has."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_heap_analytics.config.settings import (
    ApiType,
    ColumnMapping,
    ColumnPath,
    PropertyColumn,
)
from destination_heap_analytics.mapping.column_report import (
    ColumnReport,
    schema_paths,
    schema_warnings,
    suggest_column,
)
from destination_heap_analytics.sync.dry_run import known_property_names

RECORD = {"identities": {"provider": "auth0"}, "user_id": "u1", "created_at": "2022"}


def columns(*names: str) -> list[ColumnPath]:
    return [ColumnPath.parse(name, "test") for name in names]


def test_seed_underscore_column_gets_the_dotted_suggestion():
    report = ColumnReport(columns("identities_provider", "user_id"), sample_size=3)
    for _ in range(3):
        report.observe(RECORD)
    assert not report.sampling
    warnings = report.warnings()
    assert len(warnings) == 1
    assert "'identities_provider'" in warnings[0]
    assert "Did you mean 'identities.provider'?" in warnings[0]


def test_present_columns_are_not_reported_and_report_is_given_once():
    report = ColumnReport(columns("user_id", "identities.provider"), sample_size=1)
    report.observe(RECORD)
    assert report.warnings() == []
    assert report.warnings() == []


def test_warnings_only_once_even_when_columns_are_missing():
    report = ColumnReport(columns("nope"), sample_size=1)
    report.observe(RECORD)
    assert len(report.warnings()) == 1
    assert report.warnings() == []


def test_column_seen_in_a_later_sampled_record_is_not_reported():
    report = ColumnReport(columns("late"), sample_size=5)
    report.observe(RECORD)
    report.observe({**RECORD, "late": 1})
    assert report.warnings() == []


def test_no_records_means_no_report():
    assert ColumnReport(columns("x")).warnings() == []


def test_suggestions_case_and_close_names_and_none():
    known = {"user_id", "identities", "identities.provider", "created_at"}
    assert suggest_column("USER_ID", known) == "user_id"
    assert suggest_column("created_att", known) == "created_at"
    assert suggest_column("completely_else", known) is None


def test_warnings_never_contain_values():
    report = ColumnReport(columns("emial"), sample_size=1)
    report.observe({"email": "secret-person@example.com"})
    (warning,) = report.warnings()
    assert "secret-person" not in warning and "'email'" in warning


def test_a_column_present_but_always_null_is_not_suggested_as_itself():
    report = ColumnReport(columns("n", "plan"), sample_size=2)
    report.observe({"n": None, "plan_": 1})
    report.observe({"n": None, "plan_": 2})
    warnings = report.warnings()
    assert warnings[0] == "Column 'n' is null in all of the first 2 records."
    assert "'plan'" in warnings[1] and "Did you mean 'plan_'?" in warnings[1]
    assert suggest_column("n", {"n", "N"}) == "N"


def test_a_deeply_nested_record_does_not_break_the_report():
    deep: object = 1
    for _ in range(5000):
        deep = {"a": deep}
    report = ColumnReport(columns("a.a.a", "b"), sample_size=1)
    report.observe({"a": deep})
    (warning,) = report.warnings()
    assert "'b'" in warning


ORDERS_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "total": {"type": ["null", "number"]},
        "customer": {
            "anyOf": [
                {"type": "null"},
                {"type": "object", "properties": {"email": {"type": "string"}}},
            ]
        },
        "lines": {"type": "array", "items": {"type": "object", "properties": {"sku": {}}}},
        "extra": {"type": "object"},
        "a.b": {"type": "string"},
    },
}


def test_schema_warnings_name_each_unknown_column_once_with_a_suggestion():
    configured = columns(
        "id",
        "totl",
        "customer.email",
        "customer.emial",
        "lines.0.sku",
        "extra.anything.deep",
        "a.b",
        "lines.x",
        "totl",
    )
    warnings = schema_warnings("orders", configured, ORDERS_SCHEMA)
    assert warnings == [
        "Stream 'orders': column 'totl' is not in the stream's schema in the configured catalog."
        " Did you mean 'total'?",
        "Stream 'orders': column 'customer.emial' is not in the stream's schema in the configured"
        " catalog. Did you mean 'customer.email'?",
        "Stream 'orders': column 'lines.x' is not in the stream's schema in the configured"
        " catalog. Did you mean 'lines'?",
    ]


@pytest.mark.parametrize("schema", [{}, {"type": "object"}, {"properties": {}}, None])
def test_a_schema_that_lists_no_properties_gives_no_warning(schema):
    assert schema_warnings("orders", columns("anything"), schema) == []


NOT_JSON_SCHEMAS = [
    {"anyOf": 5},
    {"oneOf": "x"},
    {"properties": []},
    {"items": "x"},
    {"type": "object", "properties": {"a": 5}},
    {"properties": {"a": {"anyOf": [{"properties": {"b": "c"}}]}}},
    {"allOf": {"properties": {"a": {}}}},
    "x",
    5,
    [],
]


@pytest.mark.parametrize("schema", NOT_JSON_SCHEMAS, ids=repr)
def test_a_schema_that_is_not_json_schema_gives_one_warning_and_no_check(schema):
    warnings = schema_warnings("orders", columns("a", "a.b", "nope"), schema)
    assert len(warnings) == 1
    assert warnings[0].startswith("Stream 'orders': its json_schema in the configured catalog is")
    assert "not a valid JSON Schema" in warnings[0]
    assert warnings[0].endswith("so the configured columns are not checked against it.")
    assert schema_paths(schema) == set()


def test_the_warning_names_where_the_schema_is_wrong():
    (warning,) = schema_warnings("orders", columns("a"), {"properties": {"a": {"anyOf": 5}}})
    assert "(at 'properties/a/anyOf')" in warning


def test_a_schema_nested_too_deeply_to_check_gives_one_warning():
    schema: dict = {"type": "object"}
    for _ in range(5000):
        schema = {"anyOf": [schema]}
    (warning,) = schema_warnings("orders", columns("a"), schema)
    assert "nested too deeply" in warning
    assert schema_paths(schema) == set()


SCHEMA_KEYS = st.sampled_from(
    ["anyOf", "oneOf", "allOf", "properties", "items", "type", "a", "b", "0", "$schema", "$ref"]
)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(SCHEMA_KEYS | st.text(max_size=3), inner, max_size=5)
    ),
    max_leaves=40,
)


@settings(max_examples=500, deadline=None)
@given(
    schema=ANY_JSON, names=st.lists(st.sampled_from(["a", "a.b", "b.0.a", "0", "x"]), max_size=4)
)
def test_any_json_as_a_schema_gives_warnings_never_an_error(schema, names):
    """Issue 14.11: any JSON can arrive in a catalog's json_schema; the report is advice and
    never ends a sync."""
    configured = columns(*names)
    warnings = schema_warnings("orders", configured, schema)
    assert all(isinstance(w, str) and w.startswith("Stream 'orders': ") for w in warnings)
    assert len(warnings) <= max(len(set(names)), 1)
    paths = schema_paths(schema)
    assert isinstance(paths, set)
    mapping = ColumnMapping(
        ApiType.TRACK, tuple(PropertyColumn(c, c.name) for c in configured), columns("u")[0]
    )
    assert known_property_names(mapping, schema) >= {c.name for c in configured}
