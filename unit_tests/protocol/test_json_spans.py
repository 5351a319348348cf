"""json_spans: exactly one valid JSON value, the members of an object and where they lie; any
depth, any number, any escape."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_heap_analytics.protocol.json_spans import NotJson, last_member, object_members

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)
objects = st.dictionaries(st.text(max_size=6), values, max_size=6)


def refuse_constant(name: str) -> None:
    raise ValueError(name)


def strict_loads(text: str) -> object:
    """The standard library's reading, without its NaN and Infinity extension."""
    return json.loads(text, parse_constant=refuse_constant)


@settings(max_examples=300)
@given(objects, st.sampled_from([None, 0, 2]), st.booleans())
def test_every_member_of_a_valid_object_is_found_where_it_lies(obj, indent, ascii_only):
    text = json.dumps(obj, indent=indent, ensure_ascii=ascii_only)
    members = object_members(text)
    assert [m.key for m in members] == list(obj)
    for member in members:
        assert strict_loads(text[member.start : member.end]) == obj[member.key]
        assert text[member.key_start : member.end].startswith(
            json.dumps(member.key, ensure_ascii=ascii_only)
        )


@settings(max_examples=500)
@given(st.text(alphabet='{}[]:,"\\ 0123456789.eE+-tfrunlasx', max_size=24))
def test_it_accepts_exactly_what_a_strict_json_reader_reads_as_an_object(text):
    try:
        expected = isinstance(strict_loads(text), dict)
    except ValueError:
        expected = False
    try:
        object_members(text)
        accepted = True
    except NotJson:
        accepted = False
    assert accepted == expected


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "1",
        '"x"',
        "{",
        "{}x",
        '{"a":01}',
        '{"a":[1,]}',
        '{"a":1,}',
        '{"a":NaN}',
        '{"a":"\\x"}',
        '{"a":"\x01"}',
        '{"a":1}{}',
        '{"a" 1}',
        '{"a":-}',
        '{"a":1.}',
        '{"a":.5}',
        '{"a":tru}',
        '{"a":[1}',
        '{"a":{]}',
    ],
)
def test_invalid_texts_are_refused(text):
    with pytest.raises(NotJson):
        object_members(text)


def test_any_depth_and_any_number_are_read_without_building_them():
    deep = "[" * 100_000 + "]" * 100_000
    text = '{"deep":' + deep + ',"big":1' + "0" * 5000 + ',"huge":1e400,"cut":"a\\ud83d"}'
    members = object_members(text)
    assert [m.key for m in members] == ["deep", "big", "huge", "cut"]
    assert text[members[0].start : members[0].end] == deep
    assert text[members[2].start : members[2].end] == "1e400"
    assert text[members[3].start : members[3].end] == '"a\\ud83d"'


def test_a_repeated_key_is_kept_and_the_last_one_wins():
    text = '{"a":1,"b":2,"a":3}'
    members = object_members(text)
    assert [m.key for m in members] == ["a", "b", "a"]
    assert text[last_member(members, "a").start] == "3"
    assert last_member(members, "z") is None


def test_a_slice_is_read_on_its_own():
    text = '{"outer":{"inner":[1,2]} }'
    (outer,) = object_members(text)
    (inner,) = object_members(text, outer.start, outer.end)
    assert (inner.key, text[inner.start : inner.end]) == ("inner", "[1,2]")
