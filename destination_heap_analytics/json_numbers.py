"""JSON numbers that neither a double nor Python's int parser can hold, kept as written.

JSON sets no range on numbers. The standard library's parser turns a literal beyond a double's
range (`1e400`, `-1e400`, 309 digits or more with a fraction) into infinity, which orjson then
writes as `null`, so `1e400`, `-1e400` and `null` would give one idempotency key; and it refuses
an integer of more than 4300 digits (Python's limit on converting text to int), which would lose
the whole line. The reader's exact parser (`input_reader._parse_exactly`) calls the two hooks
below instead, and such a number reaches the transformer as a `RawNumber`: its literal text,
which the transformer's rules send, refuse or hash exactly (`transformer.put_value`,
`number_as_text`, `to_json`). A number too small for a double (`1e-400`) becomes 0, as every
float literal is rounded to the nearest double.
"""

from __future__ import annotations

import math


class RawNumber:
    """A JSON number literal kept as its text, because no Python number holds it exactly.

    A plain class on purpose: orjson writes a dataclass (or a str subclass) as JSON of its own,
    so a RawNumber would hash like the object `{"text": …}` or the string; it must refuse it.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return type(other) is RawNumber and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        """Never the digits: a repr can end up in a log or an assertion message."""
        return f"RawNumber({len(self.text)} characters)"


def parse_float(text: str) -> float | RawNumber:
    """`json.loads`'s hook for literals with a fraction or an exponent."""
    value = float(text)
    if math.isinf(value):
        return RawNumber(text)
    return value


def parse_int(text: str) -> int | RawNumber:
    """`json.loads`'s hook for integer literals: exact, of any length."""
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        return RawNumber(text)
