"""sanitise: any text from Heap becomes words of the fixed vocabulary, and nothing else."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_heap_analytics.heap.privacy import (
    CUT_MARK,
    MAX_DESCRIPTION_WORDS,
    NOTHING_SAFE_TO_SHOW,
    VOCABULARY,
    sanitise,
)

SHOWN_WORDS = frozenset(VOCABULARY.values())
SHOWN_LOWER = (
    frozenset(word.lower() for word in SHOWN_WORDS)
    | {CUT_MARK}
    | frozenset(NOTHING_SAFE_TO_SHOW.split())  # a value such as "NATION" is in "explanation"
)
POSITIONS = st.integers(0, 999).filter(lambda n: str(n) not in VOCABULARY)
"""Item positions; Heap's limits (255, 1000) are vocabulary words and would show."""
FRAGMENT = 6
"""A value's fragment this long in a log line counts as a leak."""


def shown_words(description: str) -> list[str]:
    """The words of a description, read by the description's grammar (not by `sanitise`'s code):
    the fixed phrase for nothing, or words joined by single spaces, optionally ending in "...".
    """
    if description == NOTHING_SAFE_TO_SHOW:
        return []
    words = description.split(" ")
    if words[-1] == CUT_MARK:
        words = words[:-1]
    return words


def assert_vocabulary_only(description: str) -> None:
    assert re.fullmatch(r"\w+( \w+)*( \.\.\.)?", description, re.ASCII), description
    assert all(word in SHOWN_WORDS for word in shown_words(description)), description
    assert len(shown_words(description)) <= MAX_DESCRIPTION_WORDS


def showable(fragment: str) -> bool:
    """Whether vocabulary words joined by spaces could spell `fragment` (then finding it in a
    description is no leak: it is made of our words, not copied from the value)."""
    pieces = fragment.lower().split(" ")
    if len(pieces) == 1:
        return any(pieces[0] in word for word in SHOWN_LOWER)
    first, *inner, last = pieces
    return (
        any(word.endswith(first) for word in SHOWN_LOWER)
        and all(piece in SHOWN_LOWER for piece in inner)
        and any(word.startswith(last) for word in SHOWN_LOWER)
    )


def leaked_fragments(secret_forms: list[str], description: str) -> list[str]:
    lowered = description.lower()
    return [
        fragment
        for form in secret_forms
        for start in range(len(form) - FRAGMENT + 1)
        if (fragment := form[start : start + FRAGMENT]).lower() in lowered
        and not showable(fragment)
    ]


def escaped_forms(secret: str) -> list[str]:
    """How a value can appear in Heap's text: as is, JSON-escaped (ASCII or not), in a repr."""
    return [
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(json.dumps(secret))[1:-1],
        repr(secret)[1:-1],
    ]


def java_repr(value: object) -> str:
    """Java's Map/List toString: {key=value, ...}, unquoted."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={java_repr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(java_repr(v) for v in value) + "]"
    return str(value)


ECHO_FORMS = {
    "raw json": lambda item: json.dumps(item, ensure_ascii=False),
    "ascii json": lambda item: json.dumps(item),
    "json in a json string": lambda item: json.dumps(json.dumps(item)),
    "python repr": repr,
    "java repr": java_repr,
}

HEAP_MESSAGES = [
    "postBody.events[{index}].properties should be object: {echo}",
    "events[{index}]: refused by the sandbox's reject_marker rule: {echo}",
    "properties.{key}: longer than 1023 characters",
    'identity "{value}" is longer than 255 characters',
    "invalid item {echo}",
    "{echo}",
    "Bad request: {value} is not a valid timestamp",
]

secrets = st.one_of(
    st.text(min_size=1, max_size=40),
    st.emails(),
    st.from_regex(r"[A-Za-z0-9]{4,12}", fullmatch=True).map(lambda m: f"café-{m}"),
    st.from_regex(r"[A-Za-z0-9 .'\"\\-]{6,30}", fullmatch=True),
)


@settings(max_examples=300)
@given(st.text(max_size=400))
def test_any_text_becomes_vocabulary_words_only(text):
    assert_vocabulary_only(sanitise(text))


@settings(max_examples=150)
@given(
    template=st.sampled_from(HEAP_MESSAGES),
    echo_form=st.sampled_from(sorted(ECHO_FORMS)),
    key=secrets,
    value=secrets,
    index=st.integers(0, 999),
    cut=st.integers(0, 2000),
)
def test_a_value_or_key_echoed_in_any_form_never_shows(template, echo_form, key, value, index, cut):
    item = {"identity": value, "event": "e", "properties": {key: value, "nested": {key: [value]}}}
    echo = ECHO_FORMS[echo_form](item)
    message = template.format(index=index, key=key, value=value, echo=echo)

    for text in (message, message[:cut]):
        description = sanitise(text)

        assert_vocabulary_only(description)
        assert leaked_fragments([*escaped_forms(key), *escaped_forms(value)], description) == []


@settings(max_examples=100)
@given(
    array=st.sampled_from(["events", "users", "accounts"]),
    index=POSITIONS,
    echo=st.text(max_size=300),
)
def test_an_echo_after_the_explanation_leaves_the_explanation_intact(array, index, echo):
    message = f"{array}[{index}]: refused by the sandbox's reject_marker rule: {echo}"

    description = sanitise(message)

    assert description.startswith(f"{array} refused by the sandbox reject_marker rule")


@settings(max_examples=100)
@given(key=st.text(max_size=30), index=POSITIONS)
def test_a_property_key_in_the_location_leaves_the_rule_intact(key, index):
    description = sanitise(f"users[{index}].properties.{key}: longer than 1023 characters")

    assert description.startswith("users properties")
    assert description.endswith("longer than 1023 characters")


@pytest.mark.parametrize(
    "message, expected",
    [
        (
            "postBody.events[0].properties should be object",
            "postBody events properties should be object",
        ),
        (
            "events[3]: refused by the sandbox's reject_marker rule",
            "events refused by the sandbox reject_marker rule",
        ),
        ("properties.x: longer than 1023 characters", "properties longer than 1023 characters"),
        ("properties.id: reserved property name", "properties id reserved property name"),
        ("identity or user_id is required", "identity or user_id is required"),
        ("Content-Type: must be application/json", "content type must be application json"),
        ("timestamp: must be ISO 8601 (YYYY-MM-DDThh:mm:ss...)", "timestamp must be ISO 8601"),
        ("account_id: required", "account_id required"),
        ("PROPERTIES SHOULD BE OBJECT", "properties should be object"),
        ("users: more than 1000 items", "users more than 1000 items"),
    ],
)
def test_heap_and_sandbox_messages_stay_useful(message, expected):
    assert sanitise(message) == expected


@pytest.mark.parametrize(
    "message, expected",
    [
        (
            'identity "alice@example.com" is longer than 255 characters',
            "identity is longer than 255 characters",
        ),
        ('identity "caf\\u00e9-Qz7Kx9" is invalid', "identity is invalid"),
        (
            "{'properties': {'jane@example.com': 'Baker Street 221b'}} should be object",
            "properties should be object",
        ),
        ('{"properties": {"amount": 12345, "ratio": 0.875}}', "properties"),
        ("properties.Qz7Kx9Wv@example.com: must be a string", "properties must be a string"),
    ],
)
def test_values_keys_and_numbers_in_heap_messages_are_dropped(message, expected):
    assert sanitise(message) == expected


@pytest.mark.parametrize("message", ["", "   ", "Qz7Kx9Wv", "alice@example.com 12345", "{}", "💥"])
def test_a_message_without_a_vocabulary_word_says_so(message):
    assert sanitise(message) == NOTHING_SAFE_TO_SHOW


def test_repeated_words_are_collapsed():
    assert sanitise("events events[1] events[2]: invalid invalid") == "events invalid"


def test_the_description_is_bounded_in_words():
    message = " ".join(["identity must be a string", "event must be a string"] * 50)

    description = sanitise(message)

    assert description.endswith(" " + CUT_MARK)
    assert len(shown_words(description)) == MAX_DESCRIPTION_WORDS


def test_the_vocabulary_holds_no_word_that_a_description_could_not_show():
    assert all(re.fullmatch(r"\w+", word, re.ASCII) for word in SHOWN_WORDS)
    assert {"app_id", "events", "identity", "properties", "required", "1023"} <= SHOWN_WORDS
