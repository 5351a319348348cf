"""README's configuration table says what spec.json says: every range, default and required
field it states is the spec's, and every field of the form has its row.

The table's cells follow a few forms, which this test reads:
- Field: a code span with the field's path (`batch_size`, `api.identity_column`,
  `object_storage_config.role_arn`); further code spans in the cell name siblings of the first.
- Required: `yes`; `no`; `S3` (required in the S3 storage option); API words (`track, user`,
  `account`, `identify`, `delete`: required in exactly those API options), optionally followed by
  `;` and a rule for other options (`user, identify; track, delete: this or ...`); anything else
  is a rule the spec cannot state (config/settings.py's), so the spec must not require the field.
- Default: one code span, equal to the spec's default (JSON where it parses, else the text);
  anything else (`—`, or words such as "time of loading") means the spec declares none, since
  the connector decides.
- Meaning: every `A to B` is the field's minimum and maximum, and a field with a range states it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from destination_heap_analytics.config.schema import connection_specification
from unit_tests.test_packaging import table_rows

README = Path(__file__).resolve().parents[2] / "README.md"
SPEC = connection_specification()
PROPERTIES = SPEC["properties"]
API_OPTIONS = {
    option["properties"]["api_type"]["const"]: option for option in PROPERTIES["api"]["oneOf"]
}
STORAGE_OPTIONS = {o["title"]: o for o in PROPERTIES["object_storage_config"]["oneOf"]}
API_WORDS = {
    "track": "track",
    "user": "add_user_properties",
    "account": "add_account_properties",
    "identify": "identify",
    "delete": "delete_users",
}


@dataclass(frozen=True)
class Place:
    """Where a field sits in the spec: its schema and the object that may require it."""

    option: str | None
    """The oneOf option that holds it (an api_type or a storage type), None at the top level."""
    schema: Mapping[str, Any]
    required: bool


def places(path: str) -> list[Place]:
    """Every place of a README field path in the spec; `api.x` is in each API option that has
    it, `object_storage_config.x` in the S3 option."""
    parent, _, name = path.rpartition(".")
    if not parent:
        return (
            [Place(None, PROPERTIES[name], name in SPEC["required"])] if name in PROPERTIES else []
        )
    options = {"api": API_OPTIONS, "object_storage_config": STORAGE_OPTIONS}[parent]
    return [
        Place(key, option["properties"][name], name in option["required"])
        for key, option in options.items()
        if name in option["properties"]
    ]


@dataclass(frozen=True)
class Row:
    fields: tuple[str, ...]
    required: str
    default: str
    meaning: str


def configuration_rows() -> list[Row]:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Configuration\n+((?:\|.*\n)+)", text, re.M)
    assert match, "README.md has no table right under '## Configuration'"
    rows = []
    for field_cell, required, default, meaning in table_rows(match.group(1)):
        first, *siblings = re.findall(r"`([^`]+)`", field_cell)
        parent = first.rpartition(".")[0]
        fields = (first, *(f"{parent}.{name}" if parent else name for name in siblings))
        rows.append(Row(fields, required, default, meaning))
    return rows


ROWS = configuration_rows()
ROW_OF = {path: row for row in ROWS for path in row.fields}
"""Each documented field path and its row."""


def is_discriminator(schema: Mapping[str, Any]) -> bool:
    return "const" in schema


def test_the_table_is_read_and_names_each_field_once():
    assert len(ROWS) >= 20
    assert {"batch_size", "api.identity_column", "object_storage_config.secret_access_key"} <= set(
        ROW_OF
    )
    assert len(ROW_OF) == sum(len(row.fields) for row in ROWS)


@pytest.mark.parametrize("path", sorted(ROW_OF))
def test_every_field_of_the_table_is_in_the_spec(path):
    assert places(path), f"README names {path}, which spec.json does not have"


def spec_fields() -> Iterator[str]:
    """Every field the form shows, except discriminators and hidden fields."""
    yield from PROPERTIES
    for parent, options in (("api", API_OPTIONS), ("object_storage_config", STORAGE_OPTIONS)):
        for option in options.values():
            for name, schema in option["properties"].items():
                if not is_discriminator(schema) and not schema.get("airbyte_hidden"):
                    yield f"{parent}.{name}"


def test_every_field_of_the_form_has_a_row():
    assert sorted(set(spec_fields()) - set(ROW_OF)) == []


def expected_required(cell: str, path: str) -> set[str | None]:
    """The options (None: the top level) in which the Required cell says the field is required."""
    found = places(path)
    if cell == "yes":
        return {place.option for place in found}
    if cell == "S3":
        return {"S3"}
    words = [word.strip() for word in cell.split(";")[0].split(",")]  # `;` starts a rule
    if all(word in API_WORDS for word in words):
        return {API_WORDS[word] for word in words}
    return set()  # `no`, or a rule only config/settings.py can state


@pytest.mark.parametrize("path", sorted(ROW_OF))
def test_required_is_what_the_spec_requires(path):
    required = {place.option for place in places(path) if place.required}
    assert required == expected_required(ROW_OF[path].required, path)


def stated_default(cell: str) -> tuple[bool, Any]:
    """(True, value) when the cell is one code span; (False, None) for words."""
    match = re.fullmatch(r"`([^`]*)`", cell)
    if match is None:
        return False, None
    try:
        return True, json.loads(match.group(1))
    except json.JSONDecodeError:
        return True, match.group(1)


@pytest.mark.parametrize("path", sorted(ROW_OF))
def test_defaults_are_the_specs(path):
    cell = ROW_OF[path].default
    states_one, value = stated_default(cell)
    for place in places(path):
        if is_discriminator(place.schema):
            continue  # its default only repeats its const, for the form
        if states_one:
            assert place.schema.get("default", "<none>") == value, place.option
        else:
            assert "default" not in place.schema, (place.option, cell)


def stated_ranges(text: str) -> list[tuple[int, int]]:
    pairs = re.findall(r"\b(\d[\d,]*) to (\d[\d,]*)\b", text)
    return [(int(low.replace(",", "")), int(high.replace(",", ""))) for low, high in pairs]


@pytest.mark.parametrize("path", sorted(ROW_OF))
def test_ranges_are_the_specs(path):
    for place in places(path):
        schema = place.schema
        expected = [(schema["minimum"], schema["maximum"])] if "minimum" in schema else []
        assert stated_ranges(ROW_OF[path].meaning) == expected, place.option


@pytest.mark.parametrize(
    ("text", "ranges"),
    [
        ("Items per request, 1 to 1000. With `1`, each", [(1, 1000)]),
        ("in any rolling minute, 0 to 10,000,000. `0` turns", [(0, 10_000_000)]),
        ("fails, 0 to 86,400 (24 h)", [(0, 86_400)]),
        ("at most 500 bytes", []),
        ("0.1.0's single-item body", []),
    ],
)
def test_ranges_are_read_as_written(text, ranges):
    assert stated_ranges(text) == ranges
