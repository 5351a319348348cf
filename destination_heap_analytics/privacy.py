"""Keep record contents out of logs even when Heap quotes them back.

Our own messages never contain values. Heap's error messages are undocumented and might echo a
value of the rejected item; before one is logged, every value of that item that appears in it is
replaced.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

REDACTED = "<redacted>"
MIN_REDACTED_LENGTH = 3
"""Shorter values (`a`, `12`) would blank out ordinary words of the message itself."""


def redact(message: str, item: dict) -> str:
    for value in sorted(set(_texts(item)), key=len, reverse=True):
        if len(value) >= MIN_REDACTED_LENGTH and value in message:
            message = message.replace(value, REDACTED)
    return message


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for child in value.values():
            yield from _texts(child)
    elif isinstance(value, (list, tuple)):
        for child in value:
            yield from _texts(child)
    elif isinstance(value, str):
        yield value
    elif value is not None and not isinstance(value, bool):
        yield str(value)
