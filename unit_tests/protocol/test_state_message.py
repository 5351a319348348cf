"""StateMessage: a state goes back exactly as it came, every field at every level, with only
destinationStats replaced; no content of a state can fail the sync."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_heap_analytics.protocol.json_spans import NotJson, object_members
from destination_heap_analytics.protocol.state_message import (
    DestinationStats,
    NotAState,
    StateKind,
    StateMessage,
    parse_state_line,
)

# Arbitrary JSON, written as text so that it can hold what no Python value round-trips:
# integers wider than 64 bits, numbers beyond a double, lone surrogate escapes, deep nesting.
scalar_texts = st.one_of(
    st.sampled_from(["null", "true", "false", "0", "-0", "1.50", "1e400", "-1E-400", "2.0"]),
    st.integers(min_value=-(10**60), max_value=10**60).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr).filter(lambda t: "inf" not in t),
    st.text().map(json.dumps),
    st.text().map(lambda t: json.dumps(t, ensure_ascii=False)),
    st.sampled_from(['"a\\ud83d"', '"\\udc00"', '"\\ud83d\\ude00"', '"\\u0000"', '"\\/"']),
)
keys = st.one_of(st.text(max_size=8), st.sampled_from(["id", "destinationStats", "type"]))


def json_texts(max_leaves: int = 15) -> st.SearchStrategy[str]:
    return st.recursive(
        scalar_texts,
        lambda children: (
            st.lists(children, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
            | st.lists(st.tuples(keys, children), max_size=4).map(
                lambda kvs: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in kvs) + "}"
            )
        ),
        max_leaves=max_leaves,
    )


def obj(*members: tuple[str, str]) -> str:
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in members) + "}"


extra_members = st.lists(
    st.tuples(st.sampled_from(["id", "some_future_field", "sourceStats", "x"]), json_texts(6)),
    max_size=3,
)
descriptors = st.tuples(st.text(min_size=1, max_size=6), st.none() | st.text(max_size=6))


@st.composite
def state_lines(draw) -> tuple[str, StateKind]:
    kind = draw(st.sampled_from(list(StateKind)))
    extra = draw(extra_members)
    if kind is StateKind.STREAM:
        name, namespace = draw(descriptors)
        descriptor = [("name", json.dumps(name))]
        if namespace is not None:
            descriptor.append(("namespace", json.dumps(namespace)))
        stream = obj(
            ("stream_descriptor", obj(*descriptor)),
            ("stream_state", draw(json_texts())),
            *draw(extra_members),
        )
        state = [("type", '"STREAM"'), ("stream", stream)]
    elif kind is StateKind.GLOBAL:
        stream_states = (
            "["
            + ",".join(
                obj(
                    ("stream_descriptor", obj(("name", '"s"'))),
                    ("stream_state", draw(json_texts())),
                    *x,
                )
                for x in draw(st.lists(extra_members, max_size=3))
            )
            + "]"
        )
        glob = obj(("shared_state", draw(json_texts())), ("stream_states", stream_states))
        state = [("type", '"GLOBAL"'), ("global", glob)]
    else:
        state = [("data", draw(json_texts().filter(lambda t: t != "null")))]
        if draw(st.booleans()):
            state.insert(0, ("type", '"LEGACY"'))
    space = draw(st.sampled_from(["", " ", "\n  "]))
    state_text = obj(*state, *extra, ("destinationStats", '{"recordCount":5}'))
    line = (
        "{"
        + space
        + f'"type":"STATE",{space}"state":{space}{state_text},"id":{draw(scalar_texts)}'
        + "}"
    )
    return line, kind


def members_by_text(text: str, start: int = 0, end: int | None = None) -> list[tuple[str, str]]:
    return [(m.key, text[m.start : m.end]) for m in object_members(text, start, end)]


@settings(max_examples=400)
@given(state_lines(), st.integers(0, 10**6), st.integers(0, 10**6))
def test_a_state_comes_back_exactly_but_for_destination_stats(case, loaded, rejected):
    line, kind = case
    state = StateMessage.parse(line)
    assert state is not None and state.kind is kind

    out = state.emitted(DestinationStats(loaded, rejected)).line

    before, after = members_by_text(line), members_by_text(out)
    assert [k for k, _ in before] == [k for k, _ in after]
    for (key, old), (_, new) in zip(before, after, strict=True):
        if key != "state":
            assert new == old  # every other top-level member, byte for byte
    old_state = [kv for kv in state_members(line) if kv[0] != "destinationStats"]
    new_state = state_members(out)
    assert new_state[:-1] == old_state
    assert new_state[-1] == (
        "destinationStats",
        f'{{"recordCount":{float(loaded)},"rejectedRecordCount":{float(rejected)}}}',
    )


def state_members(line: str) -> list[tuple[str, str]]:
    (state,) = [m for m in object_members(line) if m.key == "state"][-1:]
    return members_by_text(line, state.start, state.end)


def test_the_platforms_id_and_unknown_fields_survive_as_they_were():
    line = (
        '{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"users",'
        '"namespace":"public"},"stream_state":{"cursor":123456789012345678901234567890,'
        '"blob":"a\\ud83d"},"some_future_field":[1e400]},"sourceStats":{"recordCount":100.0},'
        '"some_future_field":{"x":1}},"id":42}'
    )
    state = StateMessage.parse(line)
    out = json.loads(state.emitted(DestinationStats(99, 1)).line)
    assert out["id"] == 42 and type(out["id"]) is int
    assert out["state"]["stream"]["stream_state"]["cursor"] == 123456789012345678901234567890
    assert out["state"]["stream"]["stream_state"]["blob"] == "a\ud83d"
    assert out["state"]["sourceStats"] == {"recordCount": 100.0}
    assert out["state"]["some_future_field"] == {"x": 1}
    assert out["state"]["destinationStats"] == {"recordCount": 99.0, "rejectedRecordCount": 1.0}
    assert state.stream == ("public", "users")


@pytest.mark.parametrize(
    "state, kind, stream",
    [
        (
            {"type": "STREAM", "stream": {"stream_descriptor": {"name": "s"}}},
            StateKind.STREAM,
            (None, "s"),
        ),
        (
            {"type": "STREAM", "stream": {"stream_descriptor": {"name": "s", "namespace": None}}},
            StateKind.STREAM,
            (None, "s"),
        ),
        ({"type": "GLOBAL", "global": {}}, StateKind.GLOBAL, None),
        ({"type": "LEGACY", "data": {}}, StateKind.LEGACY, None),
        ({"data": []}, StateKind.LEGACY, None),
        ({"type": "SOMETHING_NEW", "x": 1}, StateKind.GLOBAL, None),
    ],
)
def test_the_kind_and_stream_of_a_state(state, kind, stream):
    parsed = StateMessage.parse(json.dumps({"type": "STATE", "state": state}))
    assert (parsed.kind, parsed.stream) == (kind, stream)


@pytest.mark.parametrize(
    "state",
    [
        "null",
        '"x"',
        "{}",
        '{"type":"STREAM"}',
        '{"type":"STREAM","stream":{}}',
        '{"type":"STREAM","stream":{"stream_descriptor":{"name":5}}}',
        '{"type":"STREAM","stream":{"stream_descriptor":{"name":"s","namespace":['
        + "[" * 2000
        + "]" * 2000
        + "]}}}",
        '{"type":"STREAM","stream":{"stream_descriptor":' + "[" * 5000 + "]" * 5000 + "}}",
        '{"type":"GLOBAL","global":[]}',
        '{"type":"LEGACY","data":null}',
        '{"type":' + "[" * 5000 + "]" * 5000 + "}",
    ],
)
def test_an_incomplete_state_is_refused_without_reading_its_contents(state):
    with pytest.raises(NotAState):
        StateMessage.parse('{"type":"STATE","state":' + state + "}")


def test_lines_that_are_not_states_or_not_json():
    assert StateMessage.parse('{"type":"RECORD","record":{"data":{"x":"STATE"}}}') is None
    assert StateMessage.parse('{"state":{"data":{}}}') is None
    with pytest.raises(NotJson):
        parse_state_line(b'{"type":"STATE","state":{"data":{}}')
    with pytest.raises(NotJson):
        parse_state_line(b'{"type":"STATE","state":{"data":"\xff"}}')
