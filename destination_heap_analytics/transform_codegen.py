"""Compile a column mapping into one flat Python function: the per-record hot path.

The transformer runs once per record. Written as small composed closures, the function calls and
attribute lookups cost as much as the work itself, so once per sync this module writes the one
function this mapping needs, as `namedtuple` and `dataclasses` do for their methods. Timings are
in docs/performance.md.

The generated code handles only the common cases inline: a plain string or number within its
limit, an ISO 8601 timestamp, a scalar property. Anything else is handed to the rule functions in
`transformer.py`, which own every rule and every error message. Column names are embedded with
`repr`, so any name is a safe literal.
"""

from __future__ import annotations

import builtins
import dis
from collections.abc import Callable, Mapping
from types import CodeType
from typing import Any

from destination_heap_analytics import heap_limits
from destination_heap_analytics.config import ApiType, ColumnMapping, ColumnPath

Rules = Mapping[str, Any]
"""What the generated code may call, by name: the rule functions of `transformer.py` (and the
route's `stats`), listed once there, in `transformer.rules_for`. `compile_getter` is used here,
while generating; everything else is called by the generated code."""


class _Source:
    """Lines of the generated function and the names it needs from outside."""

    def __init__(self) -> None:
        self.lines: list[str] = ["def transform(data, stream_key=b''):"]
        self.namespace: dict[str, Any] = {}

    def add(self, line: str, indent: int = 1) -> None:
        self.lines.append("    " * indent + line)

    def name(self, prefix: str, value: Any) -> str:
        """Make `value` available to the generated code under a fresh name."""
        name = f"{prefix}_{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def build(self) -> Callable[[dict, bytes], dict]:
        code = compile("\n".join(self.lines), "<heap transform>", "exec")
        self._check_names(code)
        exec(code, self.namespace)  # noqa: S102 - source assembled above from repr()'d names
        return self.namespace["transform"]

    def _check_names(self, code: CodeType) -> None:
        """Every global the generated function uses is a rule it was given: a rule renamed or
        dropped in `transformer.rules_for` fails when the transform is built, not on the one
        record that would have reached it."""
        function = next(c for c in code.co_consts if isinstance(c, CodeType))
        used = {i.argval for i in dis.get_instructions(function) if i.opname == "LOAD_GLOBAL"}
        missing = used - self.namespace.keys() - set(dir(builtins))
        if missing:
            raise NameError(f"the generated transform uses unknown names: {sorted(missing)}")


def compile_transform(mapping: ColumnMapping, rules: Rules) -> Callable[[dict, bytes], dict]:
    source = _Source()
    source.namespace.update(rules)
    fields: list[str] = []
    api_type = mapping.api_type
    if api_type is ApiType.TRACK:
        fields.append(_user(source, mapping, rules, "user_id_text"))
        if mapping.event_name is not None:
            source.add(f"event = {mapping.event_name!r}")
        else:
            _text(source, "event", mapping.event_column, heap_limits.MAX_EVENT_NAME_LENGTH, rules)
        _timestamp(source, mapping.timestamp_column, rules)
        fields += ["event", "timestamp"]
    elif api_type is ApiType.ADD_USER_PROPERTIES:
        _identity(source, mapping.identity_column, rules)
        fields.append("identity")
    elif api_type is ApiType.ADD_ACCOUNT_PROPERTIES:
        _text(source, "account_id", mapping.account_id_column, None, rules)
        fields.append("account_id")
    elif api_type is ApiType.IDENTIFY:
        _identity(source, mapping.identity_column, rules)
        _user_id(source, mapping.user_id_column, rules, "user_id_text")
        fields += ["identity", "user_id"]
    else:  # DELETE_USERS: the user alone, by identity or by user_id (a JSON integer)
        fields.append(_user(source, mapping, rules, "user_id_number"))
    if api_type.form.sends_properties:
        _properties(source, mapping, rules)
        fields.append("properties")
    if api_type is ApiType.TRACK:
        _idempotency_key(source, mapping.idempotency_key_column, rules)
        fields.append("idempotency_key")
    source.add("item = {" + ", ".join(f"{name!r}: {name}" for name in fields) + "}")
    if api_type is ApiType.IDENTIFY and mapping.timestamp_column is not None:
        _fetch(source, mapping.timestamp_column, rules)
        source.add(f"timestamp = optional_timestamp(value, {mapping.timestamp_column.name!r})")
        source.add("if timestamp is not None: item['timestamp'] = timestamp")
    source.add("return item")
    return source.build()


def _identity(source: _Source, column: ColumnPath | None, rules: Rules) -> None:
    _text(source, "identity", column, heap_limits.MAX_IDENTITY_LENGTH, rules)


def _user(source: _Source, mapping: ColumnMapping, rules: Rules, user_id_rule: str) -> str:
    """The user of an event or a deletion: its identity, or its user_id (by `user_id_rule`);
    returns the item field it sets."""
    if mapping.user_id_column is not None:
        _user_id(source, mapping.user_id_column, rules, user_id_rule)
        return "user_id"
    _identity(source, mapping.identity_column, rules)
    return "identity"


def _user_id(source: _Source, column: ColumnPath | None, rules: Rules, rule: str) -> None:
    """`user_id = <rule>(value, column)`: no inline case, the rule decides every value."""
    assert column is not None
    _fetch(source, column, rules)
    source.add(f"user_id = {rule}(value, {column.name!r})")


def _fetch(source: _Source, column: ColumnPath, rules: Rules) -> None:
    """`value = <the column's value or None>`: plain dict lookups inline, anything else
    (list indexes, literal dotted keys) through the general getter."""
    head, *rest = column.segments
    source.add(f"value = data.get({head!r})")
    if not rest:
        return
    if all(not segment.isdigit() for segment in rest):
        for segment in rest:
            source.add(f"value = value.get({segment!r}) if value.__class__ is dict else None")
        getter = source.name("get", rules["compile_getter"](column))
        source.add(f"if value is None: value = {getter}(data)")
    else:
        getter = source.name("get", rules["compile_getter"](column))
        source.add(f"value = {getter}(data)")


def _text(
    source: _Source, var: str, column: ColumnPath | None, limit: int | None, rules: Rules
) -> None:
    assert column is not None
    _fetch(source, column, rules)
    within = f" and len(value) <= {limit}" if limit is not None else ""
    source.add(f"if value.__class__ is str and value{within} and not value.isspace():")
    source.add(f"{var} = value", 2)
    source.add("else:")
    source.add(f"{var} = required_text(value, {column.name!r}, {limit!r})", 2)


def _timestamp(source: _Source, column: ColumnPath | None, rules: Rules) -> None:
    if column is None:
        source.add("timestamp = read_timestamp(None, None)")
        return
    _fetch(source, column, rules)
    source.add("if value.__class__ is str and is_canonical_timestamp(value):")
    source.add("timestamp = value", 2)
    source.add("else:")
    source.add(f"timestamp = read_timestamp(value, {column.name!r})", 2)


def _properties(source: _Source, mapping: ColumnMapping, rules: Rules) -> None:
    source.add("properties = {}")
    excluded = mapping.exclude_columns
    if mapping.property_columns is None:
        arguments = "data, '', properties, stats, 1"
        if excluded:
            arguments += f", {source.name('excluded', excluded)}"
        source.add(f"flatten_value({arguments})")
    else:
        for property_column in mapping.property_columns:
            column, name = property_column.path, property_column.name
            below = frozenset(e for e in excluded if e.startswith(f"{column.name}."))
            _fetch(source, column, rules)
            depth = len(column.segments) + 1
            placement = f"{name!r}, value, stats, {depth}, {column.name!r}"
            if below:
                placement += f", {source.name('excluded', below)}"
            if property_column.enclosed:  # rare: no inline case, the rules decide
                source.add("if value is not None:")
                source.add("produced = {}", 2)
                source.add(f"put_value(produced, {placement})", 2)
                source.add("merge_enclosed(properties, produced)", 2)
                continue
            source.add("kind = value.__class__")
            source.add(
                f"if kind is str and len(value) <= {heap_limits.MAX_PROPERTY_LENGTH} "
                f"or kind is bool or kind is int and -{heap_limits.MAX_EXACT_INTEGER} <= value "
                f"<= {heap_limits.MAX_EXACT_INTEGER}:"
            )
            source.add(f"properties[{name!r}] = value", 2)
            source.add("elif value is not None:")
            source.add(f"put_value(properties, {placement})", 2)
    if mapping.api_type is ApiType.ADD_USER_PROPERTIES:
        source.add("drop_reserved_id(properties)")


def _idempotency_key(source: _Source, column: ColumnPath | None, rules: Rules) -> None:
    if column is not None:
        _text(source, "idempotency_key", column, None, rules)
        return
    source.add("idempotency_key = record_hash(data, stream_key)")
