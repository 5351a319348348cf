"""Where the members of a JSON object lie in its text, without building its values.

A STATE message must go back to the platform exactly as it came, but for `destinationStats`
(docs/architecture.md, "States"). Parsing it into Python values and writing it out again cannot
promise that: integers wider than 64 bits, numbers outside a double's range, lone UTF-16
surrogate escapes and nesting deeper than a parser's recursion limit each either fail or change
on the way. This module reads the text itself: it checks that a text is exactly one valid JSON
value (RFC 8259) and says where each member of an object starts and ends, so the caller can
decode the few small members it needs and copy everything else byte for byte.

The scan is iterative (a stack of open containers, no recursion), so no nesting depth can make it
fail, and each token is matched by one regular expression, so long strings cost C speed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""[ \t\n\r]*(?:
        (?P<string>"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*")
      | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
      | (?P<literal>true|false|null)
      | (?P<punct>[{}\[\],:])
    )""",
    re.VERBOSE,
)
_TRAILING_SPACE = re.compile(r"[ \t\n\r]*")


class NotJson(ValueError):
    """The text is not exactly one valid JSON value (or not the object the caller needs)."""


@dataclass(frozen=True)
class Member:
    """One `"key": value` of an object: the decoded key, where the member's text starts (its
    key) and where its value's text lies."""

    key: str
    key_start: int
    start: int
    end: int


# What the scanner expects next.
_VALUE, _VALUE_OR_CLOSE, _KEY, _KEY_OR_CLOSE, _COLON, _COMMA_OR_CLOSE = range(6)


def object_members(text: str, start: int = 0, end: int | None = None) -> list[Member]:
    """The members of the object that `text[start:end]` holds, in order (duplicates kept).

    Raises NotJson unless that slice is exactly one valid JSON value and the value is an object.
    """
    end = len(text) if end is None else end
    members: list[Member] = []
    stack: list[str] = []  # "{" or "[" per open container
    expect = _VALUE
    key: str | None = None
    key_start = value_start = 0
    position = start
    while True:
        token = _TOKEN.match(text, position, end)
        if token is None:
            break
        position = token.end()
        kind = token.lastgroup
        first = token.start(kind)
        if kind == "punct":
            mark = token.group(kind)
            if mark in "{[" and expect in (_VALUE, _VALUE_OR_CLOSE):
                if not stack and mark != "{":
                    raise NotJson("not an object")
                if len(stack) == 1:
                    value_start = first
                stack.append(mark)
                expect = _KEY_OR_CLOSE if mark == "{" else _VALUE_OR_CLOSE
                continue
            if (
                mark in "}]"
                and stack
                and (
                    expect == _COMMA_OR_CLOSE
                    or (expect == _KEY_OR_CLOSE and mark == "}")
                    or (expect == _VALUE_OR_CLOSE and mark == "]")
                )
            ):
                if (stack.pop() == "{") != (mark == "}"):
                    raise NotJson("brackets do not match")
                if len(stack) == 1:
                    members.append(Member(_decode_key(key), key_start, value_start, position))
                expect = _COMMA_OR_CLOSE
                if not stack:
                    break
                continue
            if mark == "," and expect == _COMMA_OR_CLOSE:
                expect = _KEY if stack[-1] == "{" else _VALUE
                continue
            if mark == ":" and expect == _COLON:
                expect = _VALUE
                continue
            raise NotJson("unexpected punctuation")
        if not stack:
            raise NotJson("not an object")
        if kind == "string" and expect in (_KEY, _KEY_OR_CLOSE):
            if len(stack) == 1:
                key, key_start = token.group(kind), first
            expect = _COLON
            continue
        if expect not in (_VALUE, _VALUE_OR_CLOSE):
            raise NotJson("a value where none may stand")
        if len(stack) == 1:
            members.append(Member(_decode_key(key), key_start, first, position))
        expect = _COMMA_OR_CLOSE
    if stack or expect != _COMMA_OR_CLOSE:
        raise NotJson("incomplete")
    if _TRAILING_SPACE.match(text, position, end).end() != end:
        raise NotJson("text after the value")
    return members


def _decode_key(raw: str | None) -> str:
    """A key token as text; its escapes are valid (the pattern checked them), lone surrogates
    are kept as they are."""
    assert raw is not None
    return json.loads(raw)


def last_member(members: list[Member], key: str) -> Member | None:
    """The member named `key`; the last one when a key repeats, as most JSON readers (the
    platform's Jackson among them) take the last."""
    found = None
    for member in members:
        if member.key == key:
            found = member
    return found
