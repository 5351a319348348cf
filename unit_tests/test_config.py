"""Config parsing: every 0.1.0 config stays valid, every bad field is named, nothing is mutated."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from destination_heap_analytics.config import (
    ApiType,
    ConfigError,
    RateLimit,
    parse_config,
)

SAMPLES = Path(__file__).resolve().parent.parent / "sample_files"
TRACK_API = {"api_type": "track", "event_column": "e", "identity_column": "i"}


def config(**overrides) -> dict:
    return {"app_id": "11", "base_url": "https://heapanalytics.com", "api": TRACK_API, **overrides}


def error_field(raw: dict) -> str:
    with pytest.raises(ConfigError) as raised:
        parse_config(raw)
    return raised.value.field


@pytest.mark.parametrize(
    "sample, api_type",
    [
        ("config-events.json", ApiType.TRACK),
        ("config-aup.json", ApiType.ADD_USER_PROPERTIES),
        ("config-aap.json", ApiType.ADD_ACCOUNT_PROPERTIES),
    ],
)
def test_sample_configs_parse_with_010_endpoints(sample, api_type):
    # 0.1.0's test_client cases: app_id, api_type and the endpoint per sample config.
    parsed = parse_config(json.loads((SAMPLES / sample).read_text()))
    assert parsed.app_id == "11"
    assert parsed.api_type is api_type
    assert parsed.endpoint_url == f"https://heapanalytics.com/api/{api_type.value}"


def test_defaults_are_bulk_1000_concurrency_4_retry_600():
    parsed = parse_config(config())
    assert (parsed.batch_size, parsed.max_concurrent_requests, parsed.max_retry_seconds) == (
        1000,
        4,
        600,
    )
    assert parsed.uses_bulk_form


def test_the_callers_dict_is_not_mutated_and_can_be_parsed_twice():
    raw = config(api={**TRACK_API, "property_columns": "a, b"})
    before = copy.deepcopy(raw)
    first, second = parse_config(raw), parse_config(raw)
    assert raw == before and first == second


def test_extra_top_level_keys_are_ignored():
    # 0.1.0 passed the config as **kwargs and crashed on any key it did not know.
    assert parse_config(config(something_else=1)).app_id == "11"


def test_property_columns_are_split_trimmed_and_deduplicated():
    parsed = parse_config(config(api={**TRACK_API, "property_columns": " a , b.c ,, a "}))
    assert [c.name for c in parsed.mapping.property_columns] == ["a", "b.c"]
    assert parsed.mapping.property_columns[1].segments == ("b", "c")


@pytest.mark.parametrize("value", ["*", " * ", None])
def test_star_or_absent_property_columns_mean_all(value):
    api = {**TRACK_API, "property_columns": value} if value is not None else TRACK_API
    assert parse_config(config(api=api)).mapping.property_columns is None


def test_base_url_trailing_slash_and_path_prefix_are_kept_correctly():
    # 0.1.0's urljoin dropped the last path segment of a base_url without a trailing slash.
    assert parse_config(config(base_url="https://proxy.example/heap/")).endpoint_url == (
        "https://proxy.example/heap/api/track"
    )


def test_base_url_defaults_to_us_host():
    raw = config()
    del raw["base_url"]
    assert parse_config(raw).base_url == "https://heapanalytics.com"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9", "http://127.8.9.1"]
)
def test_plain_http_is_allowed_only_for_loopback(url):
    assert parse_config(config(base_url=url)).base_url == url


@pytest.mark.parametrize(
    "url", ["http://heapanalytics.com", "ftp://x", "heapanalytics.com", "https://", 5]
)
def test_other_base_urls_are_config_errors(url):
    assert error_field(config(base_url=url)) == "base_url"


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"api": TRACK_API}, "app_id"),
        (config(app_id="  "), "app_id"),
        (config(app_id=True), "app_id"),
        (config(api=None), "api"),
        (config(api={"api_type": "delete"}), "api.api_type"),
        (config(api={"api_type": "track", "identity_column": "i"}), "api.event_column"),
        (config(api={"api_type": "track", "event_column": "e"}), "api.identity_column"),
        (config(api={"api_type": "add_user_properties"}), "api.identity_column"),
        (config(api={"api_type": "add_account_properties"}), "api.account_id_column"),
        (config(api={**TRACK_API, "event_column": "a,b"}), "api.event_column"),
        (config(api={**TRACK_API, "event_column": 3}), "api.event_column"),
        (config(api={**TRACK_API, "timestamp_column": "a..b"}), "api.timestamp_column"),
        (config(api={**TRACK_API, "property_columns": "*,a"}), "api.property_columns"),
        (config(api={**TRACK_API, "property_columns": ["a"]}), "api.property_columns"),
        (config(batch_size=0), "batch_size"),
        (config(batch_size=1001), "batch_size"),
        (config(batch_size="10"), "batch_size"),
        (config(max_concurrent_requests=17), "max_concurrent_requests"),
        (config(max_events_per_minute=-1), "max_events_per_minute"),
        (config(max_retry_seconds=-5), "max_retry_seconds"),
    ],
)
def test_every_bad_field_is_named(raw, field):
    assert error_field(raw) == field


def test_error_messages_name_the_field():
    with pytest.raises(ConfigError, match="'api.identity_column'"):
        parse_config(config(api={"api_type": "track", "event_column": "e"}))


def test_default_pacing_is_heaps_documented_limits():
    pacing = parse_config(config()).pacing
    assert pacing.per_app == RateLimit(15_000, 60.0)
    assert pacing.per_identity == RateLimit(1_000, 60.0)
    single = parse_config(config(batch_size=1)).pacing
    assert single.per_app is None and single.per_identity == RateLimit(30, 30.0)
    accounts = parse_config(
        config(api={"api_type": "add_account_properties", "account_id_column": "a"})
    ).pacing
    assert not accounts.enabled


def test_max_events_per_minute_overrides_and_zero_disables_pacing():
    assert parse_config(config(max_events_per_minute=600)).pacing.per_app == RateLimit(600, 60.0)
    assert not parse_config(config(max_events_per_minute=0)).pacing.enabled


def test_idempotency_key_column_is_track_only():
    parsed = parse_config(config(api={**TRACK_API, "idempotency_key_column": "meta.id"}))
    assert parsed.mapping.idempotency_key_column.segments == ("meta", "id")
    users = parse_config(
        config(
            api={
                "api_type": "add_user_properties",
                "identity_column": "i",
                "idempotency_key_column": "x",
            }
        )
    )
    assert users.mapping.idempotency_key_column is None


def test_pacing_time_scale_env_shrinks_every_window(monkeypatch):
    monkeypatch.setenv("DESTINATION_HEAP_ANALYTICS_PACING_TIME_SCALE", "0.1")
    pacing = parse_config(config()).pacing
    assert pacing.per_app == RateLimit(15_000, 6.0)
    assert pacing.per_identity == RateLimit(1_000, 6.0)
    assert pacing.time_scale == 0.1


@pytest.mark.parametrize("value", ["0", "2", "fast"])
def test_bad_pacing_time_scale_is_a_config_error(monkeypatch, value):
    monkeypatch.setenv("DESTINATION_HEAP_ANALYTICS_PACING_TIME_SCALE", value)
    assert error_field(config()) == "DESTINATION_HEAP_ANALYTICS_PACING_TIME_SCALE"
