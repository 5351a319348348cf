"""spec.json follows the rules the Airbyte UI needs to render a connector's form.

The rules are those of Airbyte's Connector Specification Reference
(docs.airbyte.com/platform/connector-development/connector-specification-reference):

- "Using oneOf": the field holding a `oneOf` has `type: object`; every option has
  `type: object`; one `string` property of the same name is present in every option with a
  `const` unique to that option (the UI reads it to know which option was chosen, so every
  option also requires it). The UI lists the options by their `title`, so each has a distinct one.
- "oneOf display type": `display_type`, when set, is `dropdown` or `radio`.
- "Using enum": the values of an `enum` are distinct.
- "Ordering fields in the UI": `order` values are not repeated within one object.
- "Forbidden keys": `not`, `anyOf`, `patternProperties`, `prefixItems`, `allOf`, `if`, `then`,
  `else`, `dependentSchemas` and `dependentRequired` are not interpreted, so never used.

Every schema node is checked, wherever it sits, not only the `api` field.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from destination_heap_analytics.config.schema import connection_specification
from destination_heap_analytics.heap import limits as heap_limits

SPEC = connection_specification()
SAMPLES = Path(__file__).resolve().parents[2] / "sample_files"

FORBIDDEN_KEYS = frozenset(
    {
        "not",
        "anyOf",
        "patternProperties",
        "prefixItems",
        "allOf",
        "if",
        "then",
        "else",
        "dependentSchemas",
        "dependentRequired",
    }
)
DISPLAY_TYPES = frozenset({"dropdown", "radio"})
SUBSCHEMA_LISTS = ("oneOf", "anyOf", "allOf")
SUBSCHEMA_KEYS = ("items", "additionalProperties", "not", "if", "then", "else")


def schema_nodes(schema: Mapping[str, Any], pointer: str = "#") -> Iterator[tuple[str, Mapping]]:
    """Every schema in `schema`, itself included, with its JSON pointer."""
    yield pointer, schema
    for name, subschema in schema.get("properties", {}).items():
        yield from schema_nodes(subschema, f"{pointer}/properties/{name}")
    for key in SUBSCHEMA_LISTS:
        for index, subschema in enumerate(schema.get(key, [])):
            yield from schema_nodes(subschema, f"{pointer}/{key}/{index}")
    for key in SUBSCHEMA_KEYS:
        if isinstance(schema.get(key), Mapping):
            yield from schema_nodes(schema[key], f"{pointer}/{key}")


def ui_rule_violations(schema: Mapping[str, Any]) -> list[str]:
    violations = []
    for pointer, node in schema_nodes(schema):
        violations += [f"{pointer}: uses forbidden key {key}" for key in FORBIDDEN_KEYS & set(node)]
        violations += enum_violations(pointer, node) + order_violations(pointer, node)
        if "oneOf" in node:
            violations += one_of_violations(pointer, node)
    return violations


def enum_violations(pointer: str, node: Mapping[str, Any]) -> list[str]:
    values = [json.dumps(value, sort_keys=True) for value in node.get("enum", [])]
    return [f"{pointer}: enum repeats a value"] if len(values) != len(set(values)) else []


def order_violations(pointer: str, node: Mapping[str, Any]) -> list[str]:
    orders = [sub["order"] for sub in node.get("properties", {}).values() if "order" in sub]
    return [f"{pointer}: order values repeat"] if len(orders) != len(set(orders)) else []


def one_of_violations(pointer: str, node: Mapping[str, Any]) -> list[str]:
    options = node["oneOf"]
    violations = []
    if node.get("type") != "object":
        violations.append(f"{pointer}: a field with oneOf must have type object")
    if "display_type" in node and node["display_type"] not in DISPLAY_TYPES:
        violations.append(f"{pointer}: display_type must be dropdown or radio")
    for index, option in enumerate(options):
        if option.get("type") != "object":
            violations.append(f"{pointer}/oneOf/{index}: an option must have type object")
        if not isinstance(option.get("title"), str) or not option["title"].strip():
            violations.append(f"{pointer}/oneOf/{index}: an option needs a title for the UI")
    titles = [option.get("title") for option in options]
    if len(titles) != len(set(titles)):
        violations.append(f"{pointer}: options share a title")
    if not discriminators(options):
        violations.append(
            f"{pointer}: no string property with a const unique to each option is present and "
            "required in every option"
        )
    return violations


def discriminators(options: list[Mapping[str, Any]]) -> list[str]:
    """Property names that tell the options apart as the reference requires."""
    names = set.intersection(*(set(option.get("properties", {})) for option in options))
    return sorted(name for name in names if is_discriminator(options, name))


def is_discriminator(options: list[Mapping[str, Any]], name: str) -> bool:
    fields = [option["properties"][name] for option in options]
    if any(field.get("type") != "string" or "const" not in field for field in fields):
        return False
    if any(name not in option.get("required", []) for option in options):
        return False
    consts = [field["const"] for field in fields]
    return len(consts) == len(set(consts))


def test_the_spec_is_a_valid_draft7_schema():
    Draft7Validator.check_schema(SPEC)


def test_every_one_of_in_the_spec_follows_the_ui_rules():
    one_ofs = [pointer for pointer, node in schema_nodes(SPEC) if "oneOf" in node]
    storage = "#/properties/object_storage_config"
    assert one_ofs == [
        "#/properties/api",
        "#/properties/streams/items/properties/api",
        storage,
        f"{storage}/oneOf/1/properties/format",
        f"{storage}/oneOf/1/properties/compression",
    ]
    assert ui_rule_violations(SPEC) == []


def test_a_streams_entry_offers_exactly_the_top_level_api_options():
    """The UI renders both the same way; only the field's own order and wording differ."""
    top = SPEC["properties"]["api"]
    per_stream = SPEC["properties"]["streams"]["items"]["properties"]["api"]
    assert per_stream["oneOf"] == top["oneOf"]
    assert {k: v for k, v in per_stream.items() if k not in ("order", "description")} == {
        k: v for k, v in top.items() if k not in ("order", "description")
    }


def test_api_options_are_told_apart_by_api_type():
    options = SPEC["properties"]["api"]["oneOf"]
    assert discriminators(options) == ["api_type"]
    assert [option["properties"]["api_type"]["const"] for option in options] == [
        "track",
        "add_user_properties",
        "add_account_properties",
        "identify",
        "delete_users",
    ]


def test_the_user_key_choices_and_the_api_key_are_left_to_the_parser():
    """Track and delete_users take identity_column or user_id_column (exactly one: a rule the
    UI's schema cannot state, config/settings.py's); identify takes both; api_key is required
    only when a mapping deletes users, which only the config and the catalog together tell."""
    options = {o["properties"]["api_type"]["const"]: o for o in SPEC["properties"]["api"]["oneOf"]}
    for api_type in ("track", "delete_users"):
        assert {"identity_column", "user_id_column"} <= set(options[api_type]["properties"])
        assert not {"identity_column", "user_id_column"} & set(options[api_type]["required"])
    assert {"identity_column", "user_id_column"} <= set(options["identify"]["required"])
    for api_type in ("identify", "delete_users"):
        assert "property_columns" not in options[api_type]["properties"]
    assert "api_key" not in SPEC["required"]
    assert "Main Production" in SPEC["properties"]["api_key"]["description"]


STORAGE = SPEC["properties"]["object_storage_config"]
S3_OPTION = STORAGE["oneOf"][1]


def test_object_storage_config_has_the_names_airbytes_platform_reads():
    """The platform links rejected records by these names (Airbyte's ObjectStorageSpec); the
    field stays optional, so organisations without the entitlement never see it required."""
    assert STORAGE["title"] == "Object Storage Configuration"
    assert "object_storage_config" not in SPEC["required"] and "default" not in STORAGE
    assert [option["title"] for option in STORAGE["oneOf"]] == ["None", "S3"]
    assert discriminators(STORAGE["oneOf"]) == ["storage_type"]
    assert S3_OPTION["required"] == [
        "storage_type",
        "s3_bucket_name",
        "s3_bucket_region",
        "bucket_path",
    ]
    assert set(S3_OPTION["properties"]) == {
        "storage_type",
        "access_key_id",
        "secret_access_key",
        "role_arn",
        "s3_bucket_name",
        "s3_bucket_region",
        "s3_endpoint",
        "bucket_path",
        "format",
        "compression",
    }
    assert S3_OPTION["properties"]["bucket_path"]["title"] == "Prefix Path in the Bucket"
    region = S3_OPTION["properties"]["s3_bucket_region"]
    assert region["default"] == "" and "" in region["enum"] and "us-east-1" in region["enum"]


def test_every_discriminator_of_the_storage_options_is_written_both_ways():
    """`const` for the UI rules above, and the one-value `enum` with its `default` that
    Airbyte's own connectors write for the same options."""
    for pointer, node in schema_nodes(STORAGE):
        for option in node.get("oneOf", []):
            (name,) = [n for n, sub in option["properties"].items() if "const" in sub]
            field = option["properties"][name]
            assert field["enum"] == [field["const"]] == [field["default"]], pointer


def test_the_secrets_are_exactly_the_s3_keys_and_the_api_key():
    """app_id is deliberately not a secret (README: Configuration); the S3 keys and the User
    Deletion API's key are, and the UI shows the S3 keys even when optional."""
    secrets = [pointer for pointer, node in schema_nodes(SPEC) if node.get("airbyte_secret")]
    assert secrets == [
        "#/properties/object_storage_config/oneOf/1/properties/access_key_id",
        "#/properties/object_storage_config/oneOf/1/properties/secret_access_key",
        "#/properties/api_key",
    ]
    for name in ("access_key_id", "secret_access_key"):
        assert S3_OPTION["properties"][name]["always_show"] is True


def test_only_jsonl_and_the_compression_choice_are_offered_and_both_are_hidden():
    properties = S3_OPTION["properties"]
    assert [o["properties"]["format_type"]["const"] for o in properties["format"]["oneOf"]] == [
        "JSONL"
    ]
    assert [
        o["properties"]["compression_type"]["const"] for o in properties["compression"]["oneOf"]
    ] == ["No Compression", "GZIP"]
    assert properties["format"]["airbyte_hidden"] and properties["compression"]["airbyte_hidden"]
    assert properties["format"]["default"] == {"format_type": "JSONL"}
    assert properties["compression"]["default"] == {"compression_type": "No Compression"}


def api_option(spec: dict, index: int) -> dict:
    return spec["properties"]["api"]["oneOf"][index]


def nested_one_of(spec: dict) -> None:
    """A oneOf deep inside an option, missing its type: the walk must find it too."""
    api_option(spec, 0)["properties"]["nested"] = {
        "oneOf": [{"type": "object", "title": "A"}, {"type": "object", "title": "B"}]
    }


MUTATIONS: dict[str, Callable[[dict], None]] = {
    "field without type object": lambda s: s["properties"]["api"].pop("type"),
    "option without type object": lambda s: api_option(s, 1).pop("type"),
    "option without a title": lambda s: api_option(s, 2).pop("title"),
    "two options with one title": lambda s: api_option(s, 1).update(title="Track Events"),
    "discriminator not required": lambda s: api_option(s, 0)["required"].remove("api_type"),
    "discriminator without const": lambda s: api_option(s, 1)["properties"]["api_type"].pop(
        "const"
    ),
    "repeated const": lambda s: api_option(s, 2)["properties"]["api_type"].update(const="track"),
    "discriminator not a string": lambda s: api_option(s, 0)["properties"]["api_type"].update(
        type="integer"
    ),
    "unknown display_type": lambda s: s["properties"]["api"].update(display_type="list"),
    "nested oneOf": nested_one_of,
    "forbidden key": lambda s: s["properties"]["batch_size"].update(anyOf=[{"minimum": 1}]),
    "repeated enum value": lambda s: s["properties"]["app_id"].update(enum=["a", "a"]),
    "repeated order": lambda s: s["properties"]["batch_size"].update(order=0),
    "storage options share a const": lambda s: s["properties"]["object_storage_config"]["oneOf"][1][
        "properties"
    ]["storage_type"].update(const="None"),
    "repeated order in the S3 option": lambda s: s["properties"]["object_storage_config"]["oneOf"][
        1
    ]["properties"]["role_arn"].update(order=1),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_each_broken_rule_is_caught(mutation):
    broken = copy.deepcopy(SPEC)
    MUTATIONS[mutation](broken)
    assert ui_rule_violations(broken) != []


def test_every_default_and_example_satisfies_its_own_field():
    # config/schema.py's with_spec_defaults relies on defaults being valid values.
    checked = 0
    for pointer, node in schema_nodes(SPEC):
        defaults = [node["default"]] if "default" in node else []
        for value in defaults + node.get("examples", []):
            assert Draft7Validator(node).is_valid(value), f"{pointer}: {value!r}"
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("sample", sorted(path.name for path in SAMPLES.glob("config-*.json")))
def test_sample_configs_satisfy_the_spec(sample):
    assert Draft7Validator(SPEC).is_valid(json.loads((SAMPLES / sample).read_text()))


def test_batch_size_is_capped_at_heaps_bulk_limit():
    batch_size = SPEC["properties"]["batch_size"]
    assert batch_size["maximum"] == heap_limits.MAX_ITEMS_PER_BULK_REQUEST
    assert batch_size["default"] == heap_limits.MAX_ITEMS_PER_BULK_REQUEST


@pytest.mark.parametrize(
    "field", ["batch_size", "max_concurrent_requests", "max_events_per_minute", "max_retry_seconds"]
)
def test_every_number_has_a_range(field):
    schema = SPEC["properties"][field]
    assert schema["type"] == "integer"
    assert schema["minimum"] <= schema["maximum"]


def test_base_url_default_and_examples_are_heaps_hosts():
    base_url = SPEC["properties"]["base_url"]
    assert base_url["default"] == heap_limits.US_BASE_URL
    assert base_url["examples"] == [heap_limits.US_BASE_URL, heap_limits.EU_BASE_URL]


def test_the_spec_is_fully_expanded():
    """Airbyte's form (airbyte-platform's `jsonSchemaToFormBlock`) never follows `$ref`, and its
    connector acceptance test fails a spec that holds one (docs/architecture.md, on
    spec_definition.py)."""
    text = json.dumps(SPEC)
    assert '"$ref"' not in text
    assert "definitions" not in SPEC and "$defs" not in SPEC


def test_every_range_is_stated_in_its_description_as_the_schema_has_it():
    ranged = [(p, n) for p, n in schema_nodes(SPEC) if "minimum" in n or "maximum" in n]
    assert len(ranged) == 4
    for pointer, node in ranged:
        stated = re.findall(r"\((\d[\d,]*) to (\d[\d,]*)\b", node["description"])
        numbers = [tuple(int(n.replace(",", "")) for n in pair) for pair in stated]
        assert numbers == [(node["minimum"], node["maximum"])], pointer
