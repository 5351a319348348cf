"""StreamMatcher: the one answer to "which stream is this" for records, states and mappings."""

from __future__ import annotations

import pytest
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer
from hypothesis import given
from hypothesis import strategies as st

from destination_heap_analytics.config.settings import (
    ApiType,
    ConfigError,
    parse_config,
    stream_label,
)
from destination_heap_analytics.mapping.streams import StreamMatcher
from unit_tests.builders import TRACK_API, make_catalog

USER_API = {"api_type": "add_user_properties", "identity_column": "email", "property_columns": "*"}


def matcher(*catalog, streams=(), default=True) -> StreamMatcher:
    raw = {"app_id": "11", "base_url": "https://heap.test", "streams": list(streams)}
    if default:
        raw["api"] = TRACK_API
    return StreamMatcher(make_catalog(*catalog), parse_config(raw))


def entry(stream: str, namespace: str | None = None, **api) -> dict:
    found = {"stream": stream, "api": {**USER_API, **api}}
    if namespace is not None:
        found["namespace"] = namespace
    return found


# --- records and states ------------------------------------------------------------------------


def test_an_exact_namespace_and_name_is_that_catalog_stream():
    streams = matcher(("shop", "orders"), ("stg", "orders"))

    assert streams.catalog_stream(("shop", "orders")) == ("shop", "orders")
    assert streams.catalog_stream(("stg", "orders")) == ("stg", "orders")


def test_another_namespace_falls_back_to_the_only_stream_of_that_name():
    streams = matcher(("shop", "orders"), (None, "users"))

    assert streams.catalog_stream(("rewritten", "orders")) == ("shop", "orders")
    assert streams.catalog_stream((None, "orders")) == ("shop", "orders")
    assert streams.catalog_stream(("any", "users")) == (None, "users")


def test_no_fallback_when_several_streams_share_the_name():
    streams = matcher(("pub", "users"), ("stg", "users"))

    assert streams.catalog_stream((None, "users")) is None
    assert streams.catalog_stream(("dev", "users")) is None


def test_other_names_are_no_catalog_stream():
    streams = matcher(("shop", "orders"))

    assert streams.catalog_stream(("shop", "refunds")) is None
    assert streams.catalog_stream((None, "Orders")) is None


# --- mappings -----------------------------------------------------------------------------------


def test_a_namespaced_entry_never_captures_another_namespace_of_the_catalog():
    """Issue 14.1: pub's user-properties mapping must not load stg.users."""
    with_default = matcher(("pub", "users"), ("stg", "users"), streams=[entry("users", "pub")])
    assert with_default.mapping(("pub", "users")).api_type is ApiType.ADD_USER_PROPERTIES
    assert with_default.mapping(("stg", "users")).api_type is ApiType.TRACK

    without_default = matcher(
        ("pub", "users"), ("stg", "users"), streams=[entry("users", "pub")], default=False
    )
    assert without_default.mapping(("stg", "users")) is None


def test_entries_match_namespace_first_then_the_entry_without_one():
    streams = matcher(
        ("public", "users"),
        ("crm", "users"),
        streams=[entry("users", "public"), entry("users", identity_column="other")],
    )
    assert streams.mapping(("public", "users")).identity_column.name == "email"
    assert streams.mapping(("crm", "users")).identity_column.name == "other"


def test_a_rewritten_namespace_still_finds_the_only_entry_of_its_name():
    streams = matcher(("airbyte_public", "users"), streams=[entry("users", "public")])
    assert streams.mapping(("airbyte_public", "users")).api_type is ApiType.ADD_USER_PROPERTIES


def test_a_rewritten_namespace_with_several_streams_of_the_name_falls_to_the_default():
    streams = matcher(("a", "users"), ("b", "users"), streams=[entry("users", "public")])
    assert streams.mapping(("a", "users")).api_type is ApiType.TRACK
    assert streams.unmatched_entries() == ["public.users"]


def test_streams_not_listed_use_the_top_level_api_or_have_none():
    assert (
        matcher((None, "refunds"), streams=[entry("users")]).mapping((None, "refunds")).api_type
        is ApiType.TRACK
    )
    assert (
        matcher((None, "refunds"), streams=[entry("users")], default=False).mapping(
            (None, "refunds")
        )
        is None
    )


def test_entries_for_streams_outside_the_catalog_are_reported():
    streams = matcher((None, "users"), streams=[entry("users"), entry("orders", "shop")])
    assert streams.unmatched_entries() == ["shop.orders"]


names = st.sampled_from(["users", "orders", "u.sers"])
namespaces = st.sampled_from([None, "pub", "stg", "dev"])


@given(
    catalog=st.lists(st.tuples(namespaces, names), min_size=1, max_size=5, unique=True),
    entries=st.lists(st.tuples(names, namespaces), max_size=4, unique=True),
    default=st.booleans(),
)
def test_an_entry_with_a_namespace_of_the_catalog_applies_to_that_stream_alone(
    catalog, entries, default
):
    default = default or not entries  # a config needs one of the two
    streams = matcher(
        *catalog,
        streams=[
            entry(name, namespace, identity_column=f"{name}-{namespace}")
            for name, namespace in entries
        ],
        default=default,
    )
    for stream in catalog:
        mapping = streams.mapping(stream)
        if mapping is None or mapping.api_type is ApiType.TRACK:
            continue
        name, namespace = mapping.identity_column.name.rsplit("-", 1)
        namespace = None if namespace == "None" else namespace
        assert name == stream[1]
        if namespace is not None and (namespace, name) in catalog:
            assert namespace == stream[0]


@pytest.mark.parametrize(
    "stream, label", [(("shop", "orders"), "shop.orders"), ((None, "orders"), "orders")]
)
def test_stream_labels(stream, label):
    assert stream_label(stream) == label


# --- a stream mapped twice: in Airbyte's mapping screen and by a `streams` entry -------------
def activated(namespace: str | None, name: str) -> dict:
    described = {
        "name": name,
        "json_schema": {"type": "object", "properties": {"identity": {}}},
        "supported_sync_modes": ["full_refresh"],
    }
    if namespace is not None:
        described["namespace"] = namespace
    return {
        "stream": described,
        "sync_mode": "full_refresh",
        "destination_sync_mode": "append_dedup",
        "destination_object_name": "user",
        "primary_key": [["identity"]],
    }


@pytest.mark.parametrize(
    ("catalog_namespace", "entry_namespace", "refused"),
    [
        ("pub", "pub", True),
        ("pub", None, True),
        ("pub", "renamed", True),  # the entry's namespace is not in the catalog: it maps pub.s
        ("pub", "stg", False),  # stg.s is in the catalog: the entry maps that stream, not pub.s
        (None, None, True),
    ],
)
def test_a_streams_entry_that_would_map_an_activated_stream_is_a_config_error(
    catalog_namespace, entry_namespace, refused
):
    """Which entry maps which stream is one rule (`StreamMatcher`), for this check as well."""
    streams = [activated(catalog_namespace, "s")]
    if entry_namespace == "stg":
        streams.append(activated("stg", "s") | {"destination_object_name": None})
    catalog = ConfiguredAirbyteCatalogSerializer.load({"streams": streams})
    raw = {
        "app_id": "11",
        "base_url": "https://heap.test",
        "streams": [entry("s", entry_namespace)],
    }
    config = parse_config(raw)
    if refused:
        with pytest.raises(ConfigError) as raised:
            StreamMatcher(catalog, config)
        assert raised.value.field == "streams[0].stream"
        assert "'user' object" in str(raised.value)
    else:
        matched = StreamMatcher(catalog, config)
        assert matched.mapping((catalog_namespace, "s")).api_type is ApiType.ADD_USER_PROPERTIES
        assert matched.mapping(("stg", "s")) is config.stream_mappings[0].mapping
