"""Config parsing: every 0.1.0 config stays valid, every bad field is named, nothing is mutated.

spec.json decides types, ranges and required fields; the generated tests at the end check that
the parser and a plain jsonschema validation of the spec never disagree.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator

from destination_heap_analytics.config.schema import connection_specification
from destination_heap_analytics.config.settings import (
    MAX_BUCKET_PATH_BYTES,
    ApiType,
    ConfigError,
    RateLimit,
    S3Storage,
    endpoint_url,
    parse_config,
)

SAMPLES = Path(__file__).resolve().parents[2] / "sample_files"
TRACK_API = {
    "api_type": "track",
    "property_columns": "*",
    "event_column": "e",
    "identity_column": "i",
}
USER_API = {"api_type": "add_user_properties", "property_columns": "*", "identity_column": "i"}
IDENTIFY_API = {"api_type": "identify", "identity_column": "i", "user_id_column": "u"}
DELETE_API = {"api_type": "delete_users", "user_id_column": "u"}
ACCOUNT_API = {
    "api_type": "add_account_properties",
    "property_columns": "*",
    "account_id_column": "a",
}


def config(**overrides) -> dict:
    return {"app_id": "11", "base_url": "https://heapanalytics.com", "api": TRACK_API, **overrides}


def without(raw: dict, *path: str) -> dict:
    """A deep copy of `raw` with the field at `path` left out."""
    copied = copy.deepcopy(raw)
    parent = copied
    for name in path[:-1]:
        parent = parent[name]
    del parent[path[-1]]
    return copied


def error_of(raw: object) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        parse_config(raw)
    return raised.value


def error_field(raw: object) -> str:
    return error_of(raw).field


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
    assert parsed.default_mapping.api_type is api_type
    assert endpoint_url(parsed.base_url, api_type) == (
        f"https://heapanalytics.com/api/{api_type.value}"
    )


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
    columns = parsed.default_mapping.property_columns
    assert [c.name for c in columns] == ["a", "b.c"]
    assert columns[1].path.segments == ("b", "c")


@pytest.mark.parametrize("value", ["*", " * ", "", " , "])
def test_star_or_empty_property_columns_mean_all(value):
    api = {**TRACK_API, "property_columns": value}
    assert parse_config(config(api=api)).default_mapping.property_columns is None


def test_base_url_trailing_slash_and_path_prefix_are_kept_correctly():
    # 0.1.0's urljoin dropped the last path segment of a base_url without a trailing slash.
    parsed = parse_config(config(base_url="https://proxy.example/heap/"))
    assert endpoint_url(parsed.base_url, ApiType.TRACK) == "https://proxy.example/heap/api/track"


def test_an_empty_base_url_means_the_us_host():
    assert parse_config(config(base_url=" ")).base_url == "https://heapanalytics.com"


@pytest.mark.parametrize("path", [("base_url",), ("api", "property_columns")])
def test_required_fields_with_a_default_are_still_required(path):
    # The spec requires them; its default is what the Airbyte UI prefills.
    assert error_field(without(config(), *path)) == ".".join(path)


def test_optional_fields_left_out_take_the_specs_defaults():
    parsed = parse_config(config())
    spec = connection_specification()["properties"]
    assert parsed.batch_size == spec["batch_size"]["default"]
    assert parsed.max_concurrent_requests == spec["max_concurrent_requests"]["default"]
    assert parsed.max_retry_seconds == spec["max_retry_seconds"]["default"]


def test_whole_numbers_written_as_floats_are_accepted_as_integers():
    # JSON Schema draft 7 counts 10.0 as an integer, so the parser must too.
    parsed = parse_config(config(batch_size=10.0, max_retry_seconds=60.0))
    assert (parsed.batch_size, parsed.max_retry_seconds) == (10, 60)
    assert type(parsed.batch_size) is int


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9", "http://127.8.9.1"]
)
def test_plain_http_is_allowed_only_for_loopback(url):
    assert parse_config(config(base_url=url)).base_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://heapanalytics.com",
        "ftp://x",
        "heapanalytics.com",
        "https://",
        "http://[::1",
        "https://h.example/?q=1",
        5,
        None,
    ],
)
def test_other_base_urls_are_config_errors(url):
    assert error_field(config(base_url=url)) == "base_url"


@pytest.mark.parametrize(
    "raw, field",
    [
        ([config()], "config"),
        (without(config(), "app_id"), "app_id"),
        (config(app_id="  "), "app_id"),
        (config(app_id=True), "app_id"),
        (config(app_id=11), "app_id"),
        (without(config(), "api"), "api"),
        (config(api=None), "api"),
        (config(api="track"), "api"),
        (config(api={"api_type": "delete"}), "api.api_type"),
        (config(api={"property_columns": "*"}), "api.api_type"),
        (config(api={**TRACK_API, "api_type": 1}), "api.api_type"),
        (without(config(), "api", "event_column"), "api.event_column"),
        (without(config(), "api", "identity_column"), "api.identity_column"),
        (config(api={**TRACK_API, "identity_column": " "}), "api.identity_column"),
        (config(api={**TRACK_API, "user_id_column": "u"}), "api.identity_column"),
        (
            config(api={**TRACK_API, "user_id_column": "a,b", "identity_column": ""}),
            "api.user_id_column",
        ),
        (without(config(api=IDENTIFY_API), "api", "user_id_column"), "api.user_id_column"),
        (without(config(api=IDENTIFY_API), "api", "identity_column"), "api.identity_column"),
        (config(api=DELETE_API), "api_key"),
        (config(api=DELETE_API, api_key=" "), "api_key"),
        (config(api={**DELETE_API, "identity_column": "i"}, api_key="k"), "api.identity_column"),
        (config(api={"api_type": "delete_users"}, api_key="k"), "api.identity_column"),
        (config(api=TRACK_API, api_key=5), "api_key"),
        (without(config(api=USER_API), "api", "identity_column"), "api.identity_column"),
        (config(api={**USER_API, "identity_column": 5}), "api.identity_column"),
        (without(config(api=ACCOUNT_API), "api", "account_id_column"), "api.account_id_column"),
        (config(api={**TRACK_API, "event_column": "a,b"}), "api.event_column"),
        (config(api={**TRACK_API, "event_column": 3}), "api.event_column"),
        (config(api={**TRACK_API, "timestamp_column": "a..b"}), "api.timestamp_column"),
        (config(api={**TRACK_API, "timestamp_column": None}), "api.timestamp_column"),
        (config(api={**TRACK_API, "property_columns": "*,a"}), "api.property_columns"),
        (config(api={**TRACK_API, "property_columns": ["a"]}), "api.property_columns"),
        (config(batch_size=0), "batch_size"),
        (config(batch_size=1001), "batch_size"),
        (config(batch_size="10"), "batch_size"),
        (config(batch_size=10.5), "batch_size"),
        (config(batch_size=None), "batch_size"),
        (config(batch_size=True), "batch_size"),
        (config(max_concurrent_requests=17), "max_concurrent_requests"),
        (config(max_events_per_minute=-1), "max_events_per_minute"),
        (config(max_events_per_minute=10_000_001), "max_events_per_minute"),
        (config(max_retry_seconds=-5), "max_retry_seconds"),
        (config(max_retry_seconds=86_401), "max_retry_seconds"),
    ],
)
def test_every_bad_field_is_named(raw, field):
    assert error_field(raw) == field


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            without(config(), "api", "identity_column"),
            "Invalid configuration fields 'api.identity_column' and 'api.user_id_column': are "
            "both empty; set exactly one of them",
        ),
        (
            config(api={**TRACK_API, "user_id_column": "u"}),
            "Invalid configuration fields 'api.identity_column' and 'api.user_id_column': are "
            "both set; set exactly one of them",
        ),
        (
            without(config(api=USER_API), "api", "identity_column"),
            "Invalid configuration field 'api.identity_column': is required for this API type",
        ),
        (
            config(api=DELETE_API),
            "Invalid configuration field 'api_key': is required when a mapping deletes users "
            "(api_type delete_users, or a soft delete in Airbyte's mapping screen): set the key "
            "of Heap's User Deletion API. Heap's User Deletion API key works only with the Main "
            "Production environment's ID as app_id",
        ),
        (
            config(api={"api_type": "delete", "property_columns": "*"}),
            "Invalid configuration field 'api.api_type': must be one of track, "
            "add_user_properties, add_account_properties, identify, delete_users",
        ),
        (
            config(batch_size=0),
            "Invalid configuration field 'batch_size': must be a whole number from 1 to 1000",
        ),
        (
            config(app_id=11),
            "Invalid configuration field 'app_id': must be a string, not a number; "
            "write it in double quotes",
        ),
        (
            config(api=[TRACK_API]),
            "Invalid configuration field 'api': must be an object, not a list",
        ),
        (
            config(max_retry_seconds="600"),
            "Invalid configuration field 'max_retry_seconds': must be a whole number from 0 to "
            "86400, not a string",
        ),
    ],
)
def test_messages_state_the_specs_rule_for_the_field(raw, message):
    assert str(error_of(raw)) == message


@pytest.mark.parametrize(
    "raw",
    [
        config(app_id=987_654_321),
        config(batch_size=987_654_321),
        config(max_events_per_minute=-987_654_321),
        config(base_url="http://SECRET-host.example"),
        config(api={**TRACK_API, "event_column": "SECRET..column"}),
        config(api={**TRACK_API, "identity_column": ["SECRET"]}),
        config(api={"api_type": "SECRET-type"}),
    ],
)
def test_messages_never_echo_the_value(raw):
    message = str(error_of(raw))
    assert "SECRET" not in message and "987654321" not in message


def test_error_messages_name_the_field():
    with pytest.raises(ConfigError, match="'api.identity_column'"):
        parse_config(without(config(), "api", "identity_column"))


def test_default_pacing_is_heaps_documented_limits():
    pacing = parse_config(config()).pacing_for(ApiType.TRACK)
    assert pacing.per_app == RateLimit(15_000, 60.0)
    assert pacing.per_identity == RateLimit(1_000, 60.0)
    single = parse_config(config(batch_size=1))
    assert single.pacing_for(ApiType.TRACK).per_app is None
    assert single.pacing_for(ApiType.TRACK).per_identity == RateLimit(30, 30.0)
    assert single.pacing_for(ApiType.ADD_USER_PROPERTIES).per_identity == RateLimit(30, 30.0)
    bulk = parse_config(config())
    assert not bulk.pacing_for(ApiType.ADD_USER_PROPERTIES).enabled
    assert not bulk.pacing_for(ApiType.ADD_ACCOUNT_PROPERTIES).enabled


def test_max_events_per_minute_overrides_and_zero_disables_pacing():
    limited = parse_config(config(max_events_per_minute=600))
    paced = [api for api in ApiType if api is not ApiType.DELETE_USERS]
    assert all(limited.pacing_for(api).per_app == RateLimit(600, 60.0) for api in paced)
    off = parse_config(config(max_events_per_minute=0))
    assert not any(off.pacing_for(api).enabled for api in ApiType)


@pytest.mark.parametrize("overrides", [{}, {"batch_size": 1}, {"max_events_per_minute": 600}])
def test_identify_is_paced_per_identity_like_the_single_forms_and_deletion_never(overrides):
    parsed = parse_config(config(**overrides))
    assert parsed.pacing_for(ApiType.IDENTIFY).per_identity == RateLimit(30, 30.0)
    assert not parsed.pacing_for(ApiType.DELETE_USERS).enabled


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_requests_take_each_apis_own_number_of_items(batch_size):
    parsed = parse_config(config(batch_size=batch_size))
    assert parsed.items_per_request(ApiType.TRACK) == batch_size
    assert parsed.items_per_request(ApiType.IDENTIFY) == 1
    assert parsed.items_per_request(ApiType.DELETE_USERS) == 10_000
    assert parsed.bulk_key_for(ApiType.IDENTIFY) is None
    assert parsed.bulk_key_for(ApiType.DELETE_USERS) == "users"
    assert parsed.bulk_key_for(ApiType.TRACK) == (None if batch_size == 1 else "events")


def test_the_new_endpoints_are_heaps_paths_under_the_base_url():
    base = "https://proxy.example/heap"
    assert endpoint_url(base, ApiType.IDENTIFY) == f"{base}/api/v1/identify"
    assert endpoint_url(base, ApiType.DELETE_USERS) == f"{base}/api/public/v0/user_deletion"


def test_track_takes_a_user_id_column_instead_of_an_identity_column():
    api = {**without(config(), "api", "identity_column")["api"], "user_id_column": "sdk.id"}
    mapping = parse_config(config(api=api)).default_mapping
    assert mapping.identity_column is None and mapping.user_id_column.segments == ("sdk", "id")


def test_identify_and_delete_users_take_their_columns_and_no_properties():
    identify = parse_config(config(api={**IDENTIFY_API, "timestamp_column": "at"})).default_mapping
    assert (identify.identity_column.name, identify.user_id_column.name) == ("i", "u")
    assert identify.timestamp_column.name == "at" and identify.property_columns == ()
    deletion = parse_config(config(api=DELETE_API, api_key=" key ")).default_mapping
    assert deletion.user_id_column.name == "u" and deletion.identity_column is None
    assert deletion.property_columns == ()


def test_the_api_key_is_kept_stripped_and_never_shown():
    parsed = parse_config(config(api=DELETE_API, api_key=" Zq9-secret "))
    assert parsed.api_key == "Zq9-secret"
    assert "Zq9" not in repr(parsed)


def test_the_api_key_is_required_by_a_deleting_streams_entry_and_nowhere_else():
    entry = {"stream": "gone", "api": DELETE_API}
    assert error_field(config(streams=[entry])) == "api_key"
    assert parse_config(config(streams=[entry], api_key="k")).api_key == "k"
    assert parse_config(config()).api_key is None
    assert parse_config(config(api_key="unused")).api_key == "unused"


def test_idempotency_key_column_is_track_only():
    parsed = parse_config(config(api={**TRACK_API, "idempotency_key_column": "meta.id"}))
    assert parsed.default_mapping.idempotency_key_column.segments == ("meta", "id")
    users = parse_config(config(api={**USER_API, "idempotency_key_column": "x"}))
    assert users.default_mapping.idempotency_key_column is None


def test_pacing_time_scale_env_shrinks_every_window(monkeypatch):
    monkeypatch.setenv("DESTINATION_HEAP_ANALYTICS_PACING_TIME_SCALE", "0.1")
    parsed = parse_config(config())
    pacing = parsed.pacing_for(ApiType.TRACK)
    assert pacing.per_app == RateLimit(15_000, 6.0)
    assert pacing.per_identity == RateLimit(1_000, 6.0)
    assert pacing.time_scale == parsed.pacing_time_scale == 0.1


@pytest.mark.parametrize("value", ["0", "2", "fast"])
def test_bad_pacing_time_scale_is_a_config_error(monkeypatch, value):
    monkeypatch.setenv("DESTINATION_HEAP_ANALYTICS_PACING_TIME_SCALE", value)
    assert error_field(config()) == "DESTINATION_HEAP_ANALYTICS_PACING_TIME_SCALE"


# -- Generated configs: the spec (plain jsonschema) and the parser give the same verdict ----------

SPEC = connection_specification()
SPEC_VALIDATOR = Draft7Validator(SPEC)
MARK = "Zq9"
"""In every generated string, so a message that echoes any generated string is caught."""

BASE_APIS = {
    "track": TRACK_API,
    "add_user_properties": USER_API,
    "add_account_properties": ACCOUNT_API,
    "identify": IDENTIFY_API,
    "delete_users": DELETE_API,
}
API_FIELDS = sorted(
    {name for option in SPEC["properties"]["api"]["oneOf"] for name in option["properties"]}
)
FIELD_PATHS = [(name,) for name in SPEC["properties"]] + [("api", name) for name in API_FIELDS]
ABSENT = object()

BOUNDS = sorted(
    {
        bound
        for field in SPEC["properties"].values()
        for bound in (field.get("minimum"), field.get("maximum"))
        if bound is not None
    }
)
marked_text = st.text(max_size=8).map(lambda text: MARK + text)
column_path = st.lists(st.from_regex(r"[a-z0-9_]{1,4}", fullmatch=True), min_size=1, max_size=3)
clean_columns = column_path.map(lambda parts: MARK + ".".join(parts))
CLEAN_URLS = [
    "https://heapanalytics.com",
    "https://c.eu.heap-api.com/",
    f"https://{MARK}.example/heap",
    "http://127.0.0.1:8080",
    "http://localhost:1",
]
AWKWARD_STRINGS = [
    "",
    " ",
    "*",
    " * ",
    ",",
    f"*,{MARK}",
    f"{MARK}..b",
    f".{MARK}",
    f"{MARK},b",
    f"{MARK}, b.c",
    f"http://{MARK}.example",
    f"ftp://{MARK}",
    f"https://{MARK}.example/?q=1",
    f"https://{MARK}.example#f",
    f"http://[{MARK}",
    "https://",
    *BASE_APIS,
]
scalars = (
    st.none()
    | st.booleans()
    | st.sampled_from(BOUNDS).flatmap(lambda bound: st.integers(bound - 2, bound + 2))
    | st.integers(-(10**12), 10**12)
    | st.integers(0, 2000).map(float)
    | st.floats(allow_nan=False, allow_infinity=False)
)
strings = (
    marked_text
    | clean_columns
    | clean_columns.map(lambda column: f"{column},{column}.x")
    | st.sampled_from(CLEAN_URLS)
    | st.sampled_from(AWKWARD_STRINGS)
)
containers = st.lists(marked_text, max_size=2) | st.dictionaries(marked_text, scalars, max_size=2)
any_value = st.just(ABSENT) | scalars | strings | containers


def semantically_clean(path: tuple[str, ...], value: object) -> bool:
    """True when a value can only fail the parser by failing the spec.

    Rules a JSON schema cannot state (dot paths, https, non-blank) apply to strings only, and
    these strings satisfy them; anything else is judged by the spec alone.
    """
    if not isinstance(value, str):
        return True
    name = path[-1]
    column = r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*"
    if name == "base_url":
        return value in CLEAN_URLS
    if name == "app_id":
        return bool(value.strip())
    if name == "property_columns":
        return value.strip() == "*" or re.fullmatch(rf"{column}(, ?{column})*", value) is not None
    if name == "api_type":
        return True
    return re.fullmatch(column, value) is not None


stream_entries = st.lists(
    st.fixed_dictionaries(
        {"stream": clean_columns, "api": st.sampled_from(list(BASE_APIS.values()))},
        optional={"namespace": st.sampled_from(["", "public", f"{MARK}ns"])},
    )
    | st.dictionaries(st.sampled_from(["stream", "api", "namespace"]), any_value, max_size=3),
    max_size=3,
)


def values_for(path: tuple[str, ...]) -> st.SearchStrategy:
    """Mostly values of the field's own JSON type, so that the later fields get judged too."""
    kind = SPEC["properties"][path[0]]["type"] if len(path) == 1 else "string"
    typed = {
        "integer": scalars,
        "string": strings,
        "object": st.sampled_from(list(BASE_APIS.values())),
        "array": stream_entries,
        "boolean": st.booleans(),
    }[kind]
    return st.one_of(typed, typed, typed, any_value)


def semantic_errors(raw: dict) -> set[str]:
    """Fields the parser's own rules (beyond the spec) refuse in a config the spec accepts:
    no mapping at all, a stream listed twice, track without exactly one event source, and an
    excluded column that property_columns lists."""
    fields = set()
    streams = raw.get("streams") or []
    if "api" not in raw and not streams:
        fields.add("api")
    listed = [
        ((entry.get("namespace") or "").strip(), entry["stream"].strip()) for entry in streams
    ]
    if len(listed) != len(set(listed)) or any(not name for _, name in listed):
        fields.update(f"streams[{i}].stream" for i in range(len(listed)))
    api = raw.get("api")
    if isinstance(api, dict) and api.get("api_type") == "track":
        has_column = bool(str(api.get("event_column", "")).strip())
        has_name = bool(str(api.get("event_name", "")).strip())
        if has_column == has_name:
            fields.add("api.event_column")
    if isinstance(api, dict) and api.get("api_type") in ("track", "delete_users"):
        has_identity = bool(str(api.get("identity_column", "")).strip())
        has_user_id = bool(str(api.get("user_id_column", "")).strip())
        if has_identity == has_user_id:
            fields.add("api.identity_column")
    apis = [api, *(entry.get("api") for entry in streams if isinstance(entry, dict))]
    if any(isinstance(a, dict) and a.get("api_type") == "delete_users" for a in apis):
        if not str(raw.get("api_key", "")).strip():
            fields.add("api_key")
    if isinstance(api, dict):
        columns = {c.strip() for c in str(api.get("property_columns", "")).split(",")}
        excluded = {c.strip() for c in str(api.get("exclude_columns", "")).split(",")}
        if any(c and (c in excluded or c.split(".")[0] in excluded) for c in columns):
            fields.add("api.exclude_columns")
    return fields


@st.composite
def generated_configs(draw) -> tuple[dict, dict[tuple[str, ...], object]]:
    """A valid config of a random API type with one to three fields replaced or left out."""
    raw = config(api=dict(BASE_APIS[draw(st.sampled_from(sorted(BASE_APIS)))]))
    paths = draw(st.lists(st.sampled_from(FIELD_PATHS), min_size=1, max_size=3, unique=True))
    changed: dict[tuple[str, ...], object] = {}
    for path in sorted(paths, key=len):  # `api` before `api.*`
        parent = raw if len(path) == 1 else raw.get("api")
        if not isinstance(parent, dict):
            continue
        value = draw(values_for(path))
        changed[path] = value
        if value is ABSENT:
            parent.pop(path[-1], None)
        elif isinstance(value, dict):
            parent[path[-1]] = dict(value)
        elif isinstance(value, list):
            parent[path[-1]] = copy.deepcopy(value)
        else:
            parent[path[-1]] = value
    return raw, changed


def echoed(message: str, changed: dict) -> bool:
    long_numbers = (v for v in changed.values() if type(v) is int and abs(v) >= 100_000)
    return MARK in message or any(str(number) in message for number in long_numbers)


def spec_value(raw: dict, field: str) -> object:
    return raw.get(field, SPEC["properties"][field].get("default"))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated_configs())
def test_the_parser_and_the_spec_never_disagree(generated):
    raw, changed = generated
    spec_accepts = SPEC_VALIDATOR.is_valid(raw)
    try:
        parsed, error = parse_config(raw), None
    except ConfigError as raised:
        parsed, error = None, raised
    if not spec_accepts:
        assert error is not None, "the parser accepted a config the spec rejects"
        assert re.split(r"[.\[]", error.field)[0] in {path[0] for path in changed}
    elif error is not None:
        unclean = {".".join(p) for p, v in changed.items() if not semantically_clean(p, v)}
        unclean |= semantic_errors(raw)
        assert error.field in unclean, f"the spec and the parser's rules accept it: {error}"
    else:
        assert parsed.app_id == raw["app_id"].strip()
        for field in ("batch_size", "max_concurrent_requests", "max_retry_seconds"):
            assert getattr(parsed, field) == spec_value(raw, field)
    if error is not None and not error.field.endswith("].stream"):  # naming a stream is fine
        assert not echoed(str(error), changed), str(error)


# -- Per-stream mappings ------------------------------------------------------------------------

USERS_ENTRY = {
    "stream": "users",
    "namespace": "public",
    "api": {
        "api_type": "add_user_properties",
        "identity_column": "email",
        "property_columns": "plan as subscription_plan, profile.city",
    },
}
ACCOUNTS_ENTRY = {
    "stream": "accounts",
    "api": {
        "api_type": "add_account_properties",
        "account_id_column": "id",
        "property_columns": "*",
        "exclude_columns": "secret, internal.notes",
    },
}
ORDERS_ENTRY = {
    "stream": "orders",
    "api": {
        "api_type": "track",
        "identity_column": "customer.email",
        "event_name": "Order Completed",
        "timestamp_column": "created_at",
        "property_columns": "total as order_total, currency",
    },
}
ISSUE_EXAMPLE = {
    "app_id": "11",
    "base_url": "https://heapanalytics.com",
    "streams": [USERS_ENTRY, ACCOUNTS_ENTRY, ORDERS_ENTRY],
}


def test_the_issue_example_parses_into_one_mapping_per_stream():
    parsed = parse_config(ISSUE_EXAMPLE)

    assert parsed.default_mapping is None
    users, accounts, orders = (entry.mapping for entry in parsed.stream_mappings)
    assert [(e.stream, e.namespace) for e in parsed.stream_mappings] == [
        ("users", "public"),
        ("accounts", None),
        ("orders", None),
    ]
    assert users.api_type is ApiType.ADD_USER_PROPERTIES
    assert [(c.path.name, c.name) for c in users.property_columns] == [
        ("plan", "subscription_plan"),
        ("profile.city", "profile.city"),
    ]
    assert accounts.exclude_columns == {"secret", "internal.notes"}
    assert (orders.event_name, orders.event_column) == ("Order Completed", None)


def test_every_old_config_keeps_working_unchanged():
    for sample in ("config-events.json", "config-aup.json", "config-aap.json"):
        parsed = parse_config(json.loads((SAMPLES / sample).read_text()))
        assert parsed.stream_mappings == ()
        assert parsed.default_mapping is not None


@pytest.mark.parametrize(
    "raw, fields, problem",
    [
        (without(ISSUE_EXAMPLE, "streams"), ("api",), "is required unless 'streams'"),
        ({**ISSUE_EXAMPLE, "streams": []}, ("api",), "is required unless 'streams'"),
        (
            {**ISSUE_EXAMPLE, "streams": [USERS_ENTRY, ACCOUNTS_ENTRY, USERS_ENTRY]},
            ("streams[2].stream",),
            "stream 'users' is already listed in streams[0]",
        ),
        (
            {
                **ISSUE_EXAMPLE,
                "streams": [
                    {**ORDERS_ENTRY, "api": {**ORDERS_ENTRY["api"], "event_column": "kind"}}
                ],
            },
            ("streams[0].api.event_column", "streams[0].api.event_name"),
            "are both set",
        ),
        (
            {**ISSUE_EXAMPLE, "streams": [USERS_ENTRY, without(ORDERS_ENTRY, "api", "event_name")]},
            ("streams[1].api.event_column", "streams[1].api.event_name"),
            "are both empty",
        ),
        (
            config(api={**TRACK_API, "event_name": "x" * 1025, "event_column": ""}),
            ("api.event_name",),
            "longer than Heap's 1024",
        ),
        (
            {**ISSUE_EXAMPLE, "streams": [without(ORDERS_ENTRY, "api", "identity_column")]},
            ("streams[0].api.identity_column", "streams[0].api.user_id_column"),
            "are both empty; set exactly one of them",
        ),
        (
            {
                **ISSUE_EXAMPLE,
                "streams": [
                    USERS_ENTRY,
                    {"stream": "x", "api": {**IDENTIFY_API, "timestamp_column": "a..b"}},
                ],
            },
            ("streams[1].api.timestamp_column",),
            "has an empty part",
        ),
        (
            {**ISSUE_EXAMPLE, "streams": [{"stream": "x", "api": {"api_type": "delete"}}]},
            ("streams[0].api.api_type",),
            "must be one of",
        ),
        (
            {**ISSUE_EXAMPLE, "streams": [{"api": TRACK_API}]},
            ("streams[0].stream",),
            "is required",
        ),
        (
            {**ISSUE_EXAMPLE, "streams": [{"stream": " ", "api": TRACK_API}]},
            ("streams[0].stream",),
            "is empty",
        ),
        ({**ISSUE_EXAMPLE, "streams": {"stream": "x"}}, ("streams",), "must be a list"),
        (
            config(api={**TRACK_API, "property_columns": "a as plan, plan"}),
            ("api.property_columns",),
            "entries 1 and 2 give the same property name",
        ),
        (
            config(api={**TRACK_API, "property_columns": "a as , b"}),
            ("api.property_columns",),
            "a property name (the name after 'as', or the column as written) must have 1 to 1023",
        ),
        (
            config(api={**TRACK_API, "property_columns": "a.b, c", "exclude_columns": "a"}),
            ("api.exclude_columns",),
            "excludes a column that property_columns lists",
        ),
        (
            config(api={**TRACK_API, "exclude_columns": "a..b"}),
            ("api.exclude_columns",),
            "has an empty part",
        ),
    ],
)
def test_every_mapping_error_names_the_exact_fields(raw, fields, problem):
    error = error_of(raw)
    assert error.fields == fields
    assert problem in str(error)
    assert "Zq9" not in str(error)


def test_renamed_and_plain_columns_may_share_a_path():
    api = {**TRACK_API, "property_columns": "plan, plan as plan_again"}
    columns = parse_config(config(api=api)).default_mapping.property_columns
    assert [(c.path.name, c.name) for c in columns] == [("plan", "plan"), ("plan", "plan_again")]


def test_dry_run_is_off_unless_asked_for():
    assert parse_config(config()).dry_run is False
    assert parse_config(config(dry_run=True)).dry_run is True
    assert error_of(config(dry_run="yes")).field == "dry_run"


# -- Property names two columns could both give (issue 14.3) and their length (14.7) -----------
def property_columns_of(value: str) -> list[tuple[str, str, bool]]:
    mapping = parse_config(config(api={**TRACK_API, "property_columns": value})).default_mapping
    return [(c.path.name, c.name, c.enclosed) for c in mapping.property_columns]


@pytest.mark.parametrize(
    "value, entries",
    [
        ("x as b.c, b", (1, 2)),
        ("b, x as b.c", (1, 2)),
        ("a as x, b as x.c", (1, 2)),
        ("a as x, a.b as x.c", (1, 2)),
        ("a as x, a.b.c as x.b", (1, 2)),
        ("n, a, x as a.", (2, 3)),
        ("a.b as q, b, q.0", (1, 3)),
    ],
)
def test_a_name_under_another_columns_name_from_elsewhere_in_the_record_is_an_error(value, entries):
    error = error_of(config(api={**TRACK_API, "property_columns": value}))
    assert error.fields == ("api.property_columns",)
    assert f"entries {entries[0]} and {entries[1]} can give the same property name" in str(error)


def test_a_column_inside_a_listed_column_is_allowed_and_applied_after_it():
    assert property_columns_of("a.b, n, a") == [
        ("n", "n", False),
        ("a", "a", False),
        ("a.b", "a.b", True),
    ]
    assert property_columns_of("a.b.c, a as x, a.b as x.b, ab") == [
        ("a.b.c", "a.b.c", False),  # its name is under no other name: it reads a.b.c alone
        ("a", "x", False),
        ("ab", "ab", False),
        ("a.b", "x.b", True),
    ]


def test_columns_without_a_shared_name_keep_their_order():
    assert property_columns_of("c, ab, a, b.a") == [
        ("c", "c", False),
        ("ab", "ab", False),
        ("a", "a", False),
        ("b.a", "b.a", False),
    ]


def test_nested_columns_are_ordered_outermost_first():
    assert [name for _, name, _ in property_columns_of("a.b.c, a.b, a")] == ["a", "a.b", "a.b.c"]


@pytest.mark.parametrize("as_written", [True, False])
def test_a_property_name_longer_than_heaps_limit_is_an_error_however_it_is_written(as_written):
    long_name = "Zq9" + "c" * 1021  # 1024 characters
    value = f"short, {long_name}" if as_written else f"short, c as {long_name}"
    error = error_of(config(api={**TRACK_API, "property_columns": value}))
    assert error.fields == ("api.property_columns",)
    assert "must have 1 to 1023 characters" in str(error)
    assert "Zq9" not in str(error)
    fits = "c" * 1023
    assert property_columns_of(f"short, {fits}")[1] == (fits, fits, False)


def test_a_long_path_renamed_with_as_is_allowed():
    long_path = ".".join(["segment"] * 200)
    assert property_columns_of(f"{long_path} as short") == [(long_path, "short", False)]


# -- object_storage_config: where rejected records go ---------------------------------------------

S3 = {
    "storage_type": "S3",
    "s3_bucket_name": "my-rejects",
    "s3_bucket_region": "eu-west-1",
    "bucket_path": "airbyte/heap/",
    "access_key_id": "AKIAEXAMPLE",
    "secret_access_key": "secret/EXAMPLE",
}


def storage(**fields) -> dict:
    return config(object_storage_config={**S3, **fields})


def test_no_object_storage_config_or_storage_type_none_means_no_bucket():
    assert parse_config(config()).object_storage is None
    assert (
        parse_config(config(object_storage_config={"storage_type": "None"})).object_storage is None
    )


def test_an_s3_object_storage_config_parses_with_the_specs_defaults():
    parsed = parse_config(storage()).object_storage
    assert parsed == S3Storage(
        bucket_name="my-rejects",
        bucket_path="airbyte/heap",
        region="eu-west-1",
        endpoint=None,
        access_key_id="AKIAEXAMPLE",
        secret_access_key="secret/EXAMPLE",
        role_arn=None,
        gzip=False,
    )
    assert "AKIAEXAMPLE" not in repr(parsed) and "secret/EXAMPLE" not in repr(parsed)


def test_the_optional_s3_settings_are_read():
    parsed = parse_config(
        storage(
            s3_bucket_region="",
            bucket_path="//",
            s3_endpoint=" http://127.0.0.1:9000/ ",
            role_arn="arn:aws:iam::123456789012:role/rejects",
            compression={"compression_type": "GZIP"},
            format={"format_type": "JSONL"},
        )
    ).object_storage
    assert parsed.region is None and parsed.bucket_path == ""
    assert parsed.endpoint == "http://127.0.0.1:9000"
    assert parsed.role_arn == "arn:aws:iam::123456789012:role/rejects"
    assert parsed.gzip is True


def test_without_keys_the_environment_or_a_role_provides_the_credentials():
    raw = storage()
    del raw["object_storage_config"]["access_key_id"]
    del raw["object_storage_config"]["secret_access_key"]
    parsed = parse_config(raw).object_storage
    assert parsed.access_key_id is None and parsed.secret_access_key is None


LONG_PATH = "p" * (MAX_BUCKET_PATH_BYTES + 1)


@pytest.mark.parametrize(
    "raw, fields, problem",
    [
        (storage(s3_bucket_name=" "), ("s3_bucket_name",), "is empty"),
        (storage(s3_bucket_name="s3://Zq9/x"), ("s3_bucket_name",), "must be a bucket name"),
        (
            config(
                object_storage_config={
                    "storage_type": "S3",
                    "bucket_path": "",
                    "s3_bucket_region": "",
                }
            ),
            ("s3_bucket_name",),
            "is required when storage_type is S3",
        ),
        (storage(s3_bucket_region="Zq9-1"), ("s3_bucket_region",), 'must be one of "" (empty), '),
        (storage(bucket_path="a/../Zq9"), ("bucket_path",), "must not have '.' or '..' parts"),
        (storage(bucket_path=LONG_PATH), ("bucket_path",), "longer than 500 bytes"),
        (storage(s3_endpoint="ftp://Zq9"), ("s3_endpoint",), "must be a full URL"),
        (storage(s3_endpoint="https://Zq9.example/?a=1"), ("s3_endpoint",), "query or fragment"),
        (
            storage(access_key_id="  "),
            ("access_key_id", "secret_access_key"),
            "go together: set both, or neither",
        ),
        (storage(role_arn="Zq9"), ("role_arn",), "must be an IAM role ARN"),
        (storage(format={"format_type": "CSV"}), ("format.format_type",), "must be one of JSONL"),
        (
            storage(compression={"compression_type": "Zq9"}),
            ("compression.compression_type",),
            "must be one of No Compression, GZIP",
        ),
        (
            config(object_storage_config={"storage_type": "Zq9"}),
            ("storage_type",),
            "must be one of None, S3",
        ),
        (config(object_storage_config="Zq9"), (), "must be an object, not a string"),
        (storage(secret_access_key=55555555), ("secret_access_key",), "must be a string"),
    ],
)
def test_every_object_storage_error_names_its_field_and_never_a_value(raw, fields, problem):
    error = error_of(raw)
    assert (
        error.fields == tuple(f"object_storage_config.{name}" for name in fields)
        or fields == ()
        and error.fields == ("object_storage_config",)
    )
    assert problem in str(error)
    assert "Zq9" not in str(error) and "55555555" not in str(error)
    assert "AKIAEXAMPLE" not in str(error) and "secret/EXAMPLE" not in str(error)


S3_FIELDS = sorted(set(SPEC["properties"]["object_storage_config"]["oneOf"][1]["properties"]))
storage_values = (
    st.just(ABSENT)
    | marked_text
    | st.sampled_from(["", " ", "/", "a/../b", "my-rejects", "S3", "None", "us-east-1"])
    | st.sampled_from(CLEAN_URLS)
    | st.sampled_from([{"format_type": "JSONL"}, {"compression_type": "GZIP"}, {}])
    | scalars
)


def storage_semantic_error(raw: dict) -> str | None:
    """The field the parser's own rules refuse in an S3 option that the spec accepts."""
    name = raw["s3_bucket_name"].strip()
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,255}", name):
        return "s3_bucket_name"
    parts = [part for part in raw["bucket_path"].strip().split("/") if part]
    if any(part in (".", "..") for part in parts) or len("/".join(parts).encode()) > 500:
        return "bucket_path"
    endpoint = raw.get("s3_endpoint", "").strip()
    if endpoint and endpoint not in CLEAN_URLS and endpoint.rstrip("/") not in CLEAN_URLS:
        return "s3_endpoint"
    has_id = bool(raw.get("access_key_id", "").strip())
    if has_id != bool(raw.get("secret_access_key", "").strip()):
        return "access_key_id"
    arn = raw.get("role_arn", "").strip()
    if arn and not (arn.startswith("arn:") and ":role/" in arn):
        return "role_arn"
    return None


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(S3_FIELDS), storage_values, max_size=4))
def test_the_parser_and_the_spec_agree_on_object_storage_config(changes):
    section = dict(S3)
    for name, value in changes.items():
        if value is ABSENT:
            section.pop(name, None)
        else:
            section[name] = value
    raw = config(object_storage_config=section)
    try:
        parsed, error = parse_config(raw), None
    except ConfigError as raised:
        parsed, error = None, raised
    if not SPEC_VALIDATOR.is_valid(raw):
        assert error is not None and error.field.startswith("object_storage_config")
    elif section["storage_type"] == "None":
        assert error is None and parsed.object_storage is None
    else:
        expected = storage_semantic_error(section)
        if expected is None:
            assert error is None, str(error)
            assert parsed.object_storage.bucket_name == section["s3_bucket_name"].strip()
        else:
            assert error is not None and error.field == f"object_storage_config.{expected}"
    event("rejected" if error is not None else "accepted")
    if error is not None:
        assert MARK not in str(error), str(error)
