"""Spot configured columns that the data never has, once, early in the sync.

A mistyped column (0.1.0's own docs used `identities_provider` for `identities.provider`) does not
fail a record: an optional property is simply absent. Without this report the user would only see
Heap items missing a property. It looks at the first records only, so it costs nothing later.
Messages carry column names only, never values; a "Did you mean …?" suggestion may name a
key of the first records (a key, not a value).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from jsonschema import Draft7Validator
from jsonschema.exceptions import SchemaError

from destination_heap_analytics.config.settings import ColumnPath
from destination_heap_analytics.mapping.transformer import compile_getter

SAMPLE_SIZE = 100
"""How many records are looked at before absent columns are reported."""
SUGGESTION_DEPTH = 16
"""Paths deeper than this are not offered as suggestions (and a hostile record cannot make
the report recurse without end)."""


class ColumnReport:
    """Watches the first SAMPLE_SIZE records; `warnings()` is ready once, after that or at end."""

    def __init__(self, columns: Iterable[ColumnPath], sample_size: int = SAMPLE_SIZE) -> None:
        self._columns = {c.name: compile_getter(c) for c in columns}
        self._unseen = set(self._columns)
        self._seen_keys: set[str] = set()
        self._sampled = 0
        self._sample_size = sample_size
        self._reported = False

    @property
    def sampling(self) -> bool:
        return self._sampled < self._sample_size and not self._reported

    def observe(self, data: dict) -> None:
        self._sampled += 1
        for name in [n for n in self._unseen if self._columns[n](data) is not None]:
            self._unseen.discard(name)
        _collect_paths(data, "", self._seen_keys)

    def warnings(self) -> list[str]:
        """One message per column missing or null in every sampled record (returned once)."""
        if self._reported or self._sampled == 0:
            return []
        self._reported = True
        return [self._describe(name) for name in sorted(self._unseen)]

    def _describe(self, name: str) -> str:
        if name in self._seen_keys:  # present under its own name: its values are all null
            return f"Column '{name}' is null in all of the first {self._sampled} records."
        message = (
            f"Column '{name}' is missing in all of the first {self._sampled} records; "
            "check its spelling (names are case-sensitive, nested columns use dots)."
        )
        suggestion = suggest_column(name, self._seen_keys)
        if suggestion:
            message += f" Did you mean '{suggestion}'?"
        return message


def suggest_column(name: str, known: set[str]) -> str | None:
    """The closest other existing dotted path: same name ignoring case or `_`/`.`, else
    difflib's best."""
    known = known - {name}
    folded = _fold(name)
    for key in sorted(known):
        if _fold(key) == folded:
            return key
    matches = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
    return matches[0] if matches else None


def _fold(name: str) -> str:
    return name.lower().replace("_", ".")


def _collect_paths(value: object, prefix: str, out: set[str], depth: int = 0) -> None:
    """Every dotted path (objects and leaves) in the record, to suggest from."""
    if depth >= SUGGESTION_DEPTH:
        return
    if isinstance(value, dict):
        children = value.items()
    elif isinstance(value, list):
        children = enumerate(value[:5])
    else:
        return
    for key, child in children:
        path = f"{prefix}.{key}" if prefix else str(key)
        out.add(path)
        _collect_paths(child, path, out, depth + 1)


def schema_warnings(stream: str, columns: Iterable[ColumnPath], json_schema: object) -> list[str]:
    """Configured columns that the stream's declared schema (in the configured catalog) does
    not have, before any record arrives. Only when the schema lists properties; a part of the
    schema that declares none (an open object) accepts any path below it. A schema that is not
    a valid JSON Schema gives one warning and no check: it is advice, never a reason to fail."""
    problem = schema_problem(json_schema)
    if problem is not None:
        return [
            f"Stream '{stream}': its json_schema in the configured catalog {problem}, so the "
            "configured columns are not checked against it."
        ]
    if not _declared_properties(json_schema):
        return []
    known = _paths_of(json_schema)
    warnings = []
    for column in dict.fromkeys(columns):
        if _in_schema(column.segments, json_schema):
            continue
        message = (
            f"Stream '{stream}': column '{column.name}' is not in the stream's schema in the "
            "configured catalog."
        )
        suggestion = suggest_column(column.name, known)
        if suggestion:
            message += f" Did you mean '{suggestion}'?"
        warnings.append(message)
    return warnings


def schema_problem(json_schema: object) -> str | None:
    """Why a declared schema cannot be read, or None (also for no schema at all). Anything can
    arrive in a catalog's `json_schema`; the meta-schema's verdict (draft 7, which Airbyte
    uses) names the keyword at fault, never a value."""
    if json_schema is None:
        return None
    try:
        Draft7Validator.check_schema(json_schema)
    except SchemaError as error:
        where = "/".join(str(part) for part in error.path)
        return "is not a valid JSON Schema" + (f" (at '{where}')" if where else "")
    except RecursionError:
        return "is nested too deeply to be read"
    return None


def _variants(schema: object) -> list[dict]:
    """A schema and the alternatives it combines (`anyOf`, `oneOf`, `allOf`), e.g. nullable."""
    if not isinstance(schema, dict):
        return []
    found = [schema]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list):
            for option in options:
                found += _variants(option)
    return found


def _declared_properties(schema: object) -> dict:
    properties: dict = {}
    for variant in _variants(schema):
        declared = variant.get("properties")
        if isinstance(declared, dict):
            properties.update(declared)
    return properties


def _items(schema: object) -> object | None:
    for variant in _variants(schema):
        if isinstance(variant.get("items"), dict):
            return variant["items"]
    return None


def declares_column(json_schema: object, column: ColumnPath) -> bool:
    """Does the stream's schema name this column, every part of its path? Stricter than the
    warnings: an object that declares no properties does not count (a deletion must not rest
    on a column that may as well not exist)."""
    if schema_problem(json_schema) is not None or json_schema is None:
        return False
    return _in_schema(column.segments, json_schema, open_counts=False)


def _in_schema(segments: tuple[str, ...], schema: object, open_counts: bool = True) -> bool:
    node = schema
    for index, segment in enumerate(segments):
        properties = _declared_properties(node)
        items = _items(node)
        if not properties and items is None:
            return open_counts  # nothing declared below here: any path may exist
        if ".".join(segments[index:]) in properties:
            return True  # a key that itself contains dots
        if segment in properties:
            node = properties[segment]
        elif segment.isdigit() and items is not None:
            node = items
        else:
            return False
    return True


def schema_paths(json_schema: object) -> set[str]:
    """Every dotted path the schema declares (list positions as `0`); none when the schema
    cannot be read (`schema_problem`)."""
    if schema_problem(json_schema) is not None:
        return set()
    return _paths_of(json_schema)


def _paths_of(json_schema: object) -> set[str]:
    paths: set[str] = set()
    _collect_schema_paths(json_schema, "", paths, 0)
    return paths


def _collect_schema_paths(schema: object, prefix: str, out: set[str], depth: int) -> None:
    if depth >= SUGGESTION_DEPTH:
        return
    for name, child in _declared_properties(schema).items():
        path = f"{prefix}.{name}" if prefix else str(name)
        out.add(path)
        _collect_schema_paths(child, path, out, depth + 1)
    items = _items(schema)
    if items is not None and prefix:
        _collect_schema_paths(items, f"{prefix}.0", out, depth + 1)
