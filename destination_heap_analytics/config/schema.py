"""spec.json as the one source of the config's types, ranges, defaults and required fields.

The CDK checks a config against the spec too, but its messages name no field and quote the
offending value (`{...the whole api object...} is not valid under any of the given schemas`,
`0 is less than the minimum of 1`). Here the same jsonschema verdict is turned into a
`ConfigError` that names the field and states the spec's rule, never the value, so the parser in
config/settings.py and the spec cannot disagree on what is allowed.
"""

from __future__ import annotations

import copy
import json
import pkgutil
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError

ROOT_FIELD = "config"
"""The field named when the config as a whole is wrong (not a JSON object)."""

_TYPE_WORDS = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "a list",
}


class ConfigError(ValueError):
    """A config value the user must fix; the message names the field (or the fields that must
    be set together) and never echoes a record value or a secret (a stream's name may appear)."""

    def __init__(self, field: str, problem: str, *also: str) -> None:
        fields = (field, *also)
        names = " and ".join(f"'{name}'" for name in fields)
        noun = "field" if len(fields) == 1 else "fields"
        super().__init__(f"Invalid configuration {noun} {names}: {problem}")
        self.field = field
        self.fields = fields


@cache
def connection_specification() -> Mapping[str, Any]:
    """The `connectionSpecification` of spec.json, the file `spec` prints. Do not mutate it."""
    raw = pkgutil.get_data("destination_heap_analytics", "spec.json")
    if raw is None:  # pragma: no cover - spec.json ships with the package
        raise FileNotFoundError("spec.json is missing from the package")
    return json.loads(raw)["connectionSpecification"]


@cache
def _validator() -> Draft7Validator:
    schema = connection_specification()
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def spec_default(field: str) -> Any:
    """The spec's `default` for a top-level field, None when it declares none."""
    return copy.deepcopy(connection_specification()["properties"][field].get("default"))


def check_against_spec(config: Any) -> None:
    """Raise a ConfigError for the first place where `config` breaks the spec."""
    error = next(iter(_validator().iter_errors(config)), None)
    if error is not None:
        raise _translate(error, branch=None)


def with_spec_defaults(config: Any) -> Any:
    """A copy of `config` with the spec's default filled in for each optional field left out.

    A required field is never filled in, even when the spec gives it a default (`base_url`,
    `api.property_columns`): the default is what the Airbyte UI prefills, and leaving the field
    out is an error, exactly as the spec says. Filling optional fields changes no verdict, since
    every default satisfies its own field's schema (unit_tests/config/test_schema.py checks that).
    """
    return _fill_defaults(config, connection_specification())


def _fill_defaults(instance: Any, schema: Mapping[str, Any]) -> Any:
    if not isinstance(instance, Mapping):
        return instance
    filled = dict(instance)
    properties = dict(schema.get("properties", {}))
    required = set(schema.get("required", ()))
    branch = chosen_option(schema, instance)
    if branch is not None:
        properties.update(branch.get("properties", {}))
        required.update(branch.get("required", ()))
    for name, subschema in properties.items():
        if name in filled:
            filled[name] = _fill_defaults(filled[name], subschema)
        elif "default" in subschema and name not in required:
            filled[name] = copy.deepcopy(subschema["default"])
    return filled


def discriminator(options: Sequence[Mapping[str, Any]]) -> str | None:
    """The property that holds a `const` in every option of a oneOf (`api_type` for `api`)."""
    if not options:
        return None
    const_names = [
        {name for name, sub in option.get("properties", {}).items() if "const" in sub}
        for option in options
    ]
    common = set.intersection(*const_names)
    return min(common) if common else None


def chosen_option(schema: Mapping[str, Any], instance: Mapping[str, Any]) -> Mapping | None:
    """The oneOf option whose discriminator `const` equals the instance's value, if any."""
    options = schema.get("oneOf")
    key = discriminator(options) if options else None
    if key is None:
        return None
    index = _option_index(options, key, instance.get(key))
    return None if index is None else options[index]


def _option_index(options: Sequence[Mapping[str, Any]], key: str, value: Any) -> int | None:
    for index, option in enumerate(options):
        const = option["properties"][key]["const"]
        if type(value) is type(const) and value == const:
            return index
    return None


def _translate(error: ValidationError, branch: str | None) -> ConfigError:
    """`branch` says which oneOf option the error is in (`for this API type`), None outside."""
    path = list(error.absolute_path)
    if error.validator == "oneOf":
        return _option_error(error, path)
    if error.validator == "required":
        missing = next(name for name in error.validator_value if name not in error.instance)
        problem = f"is required {branch}" if branch else "is required"
        return ConfigError(_field(path + [missing]), problem)
    return ConfigError(_field(path), _problem(error))


def _branch_phrase(key: str, const: Any) -> str:
    """`for this API type` for `api`; `when storage_type is S3` for any other oneOf."""
    return "for this API type" if key == "api_type" else f"when {key} is {const}"


def _option_error(error: ValidationError, path: list[str | int]) -> ConfigError:
    """Pick the option the user chose by its discriminator and report that option's error.

    jsonschema can only say that no option matched; the user meant one of them, and needs to
    hear what that one lacks.
    """
    instance, options = error.instance, error.validator_value
    key = discriminator(options)
    if not isinstance(instance, Mapping) or key is None:
        return ConfigError(_field(path), _problem(error))
    index = _option_index(options, key, instance.get(key))
    if index is None:
        allowed = ", ".join(str(option["properties"][key]["const"]) for option in options)
        return ConfigError(_field(path + [key]), f"must be one of {allowed}")
    chosen = (sub for sub in error.context or () if sub.relative_schema_path[0] == index)
    first = next(chosen, None)
    if first is None:  # pragma: no cover - the chosen option failed, so it has an error
        return ConfigError(_field(path), "does not match the connector specification")
    return _translate(first, branch=_branch_phrase(key, options[index]["properties"][key]["const"]))


def _field(path: list[str | int]) -> str:
    """`streams[2].api.event_name`: list positions in brackets, as users read them."""
    field = ""
    for part in path:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else part)
    return field or ROOT_FIELD


def _problem(error: ValidationError) -> str:
    """The spec's rule for the field, in words; the value itself is never quoted."""
    expected = expectation(error.schema)
    if error.validator in ("type", "oneOf"):
        problem = f"must be {expected}, not {json_kind(error.instance)}"
        if error.schema.get("type") == "string" and json_kind(error.instance) == "a number":
            problem += "; write it in double quotes"
        return problem
    if error.validator in ("minimum", "maximum", "const", "enum"):
        return f"must be {expected}"
    return f"does not meet the connector specification's '{error.validator}' rule"


def expectation(schema: Mapping[str, Any]) -> str:
    """What the spec allows for a field: `a whole number from 1 to 1000`, `one of a, b`."""
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(_enum_word(value) for value in schema["enum"])
    words = _TYPE_WORDS.get(schema.get("type"), "a value of the specified type")
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f"{words} from {low} to {high}"
    if low is not None:
        return f"{words} of at least {low}"
    if high is not None:
        return f"{words} of at most {high}"
    return words


def _enum_word(value: Any) -> str:
    """An allowed value as the message lists it; the empty string must stay visible."""
    return '"" (empty)' if value == "" else str(value)


def json_kind(value: Any) -> str:
    """The JSON type of a value in words, which says what is wrong without showing the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a number" if value.is_integer() else "a fractional number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    return "a list"
