"""Read Airbyte messages from stdin's bytes; no line can end the sync or reach the log.

The CDK's reader decodes stdin as text (one byte that is not UTF-8 ends the sync), logs a line it
cannot parse in full (record contents included), and passes through JSON that is only half a
message (`{"type": "RECORD"}`). This one reads bytes, and for every line either yields a complete
message or skips it, counted by reason and logged by line number and length only.

Parsing is orjson's (fast) except where orjson would change the data: integers wider than 64
bits (orjson rounds them to floats, so two distinct ids would become one) and lone UTF-16
surrogate escapes (orjson refuses the line; Java and JavaScript sources emit them when they cut
text mid-emoji). Those lines go through the standard library's exact parser, and a lone
surrogate becomes U+FFFD, counted.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import select
from collections.abc import Iterable, Iterator
from typing import IO, Any

import orjson
from airbyte_cdk.models import AirbyteMessage, AirbyteMessageSerializer, Type

from destination_heap_analytics.counters import InputStats
from destination_heap_analytics.json_numbers import parse_float, parse_int
from destination_heap_analytics.protocol.idle import IDLE, Idle
from destination_heap_analytics.protocol.json_spans import NotJson
from destination_heap_analytics.protocol.state_message import (
    NotAState,
    StateMessage,
    parse_state_line,
)

LOGGED_LINES = 10
"""Unparseable lines logged one by one; the rest are counted in the summary."""

NOT_UTF8 = "not valid UTF-8"
NOT_JSON = "not valid JSON"
NESTED_TOO_DEEP_TO_READ = "JSON nested too deeply to read"
NOT_A_MESSAGE = "not a valid Airbyte message"

_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0000000000")
_WIDE_RUN = b"0" * 19
"""A run of 19 digits or more may not fit orjson's 64-bit integers. Mapping every digit to `0`
and looking for 19 of them in a row is a C-speed scan (a regex took 15 µs a line). A long run
inside a string also sends the line to the slower exact path, for nothing: correct either way."""
_SURROGATE = re.compile("[\ud800-\udfff]")


IDLE_SECONDS = 0.5
"""How long stdin may be silent before the writer gets an `IDLE`: a source that pauses (a slow
API, a long query) must not keep states that could be released, or the progress line, waiting."""
READ_SIZE = 1 << 20


def stdin_lines(stream: IO[bytes], idle_seconds: float = IDLE_SECONDS) -> Iterator[bytes | Idle]:
    """stdin's lines, and an `IDLE` whenever it is silent for `idle_seconds`.

    A blocking read would leave the writer unable to release a state whose batches were
    acknowledged after the source's last line, until the source sends another; so the file
    descriptor is read directly, after `select` says it has something. A stream without one (a
    test's BytesIO) is read as it is. Lines of any length cost linear time: a line's pieces are
    joined once it is complete.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        yield from stream
        return
    pieces: list[bytes] = []
    while True:
        ready, _, _ = select.select([fd], [], [], idle_seconds)
        if not ready:
            yield IDLE
            continue
        chunk = os.read(fd, READ_SIZE)
        if not chunk:
            break
        newline = chunk.find(b"\n")
        if newline < 0:
            pieces.append(chunk)
            continue
        pieces.append(chunk[:newline])
        yield b"".join(pieces)
        lines = chunk[newline + 1 :].split(b"\n")
        pieces = [lines.pop()]
        yield from lines
    tail = b"".join(pieces)
    if tail:
        yield tail


class UnreadableLine(Exception):
    """A line that cannot become a message; `reason` is one of the constants above."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_messages(
    lines: Iterable[bytes | str | Idle], stats: InputStats, logger: logging.Logger
) -> Iterator[AirbyteMessage | StateMessage | Idle]:
    """`lines` are stdin's raw lines (text lines are accepted too, and encoded back); an `IDLE`
    among them is passed on.

    A STATE line becomes a `StateMessage`, kept as the text it came as (state_message.py);
    every other message an `AirbyteMessage`. Runs once per line, so the common case (orjson, a
    complete RECORD) is written inline and the rare ones call out.
    """
    loads, load, record = orjson.loads, AirbyteMessageSerializer.load, Type.RECORD
    line_number = 0
    for line in lines:
        if line is IDLE:
            yield IDLE
            continue
        line_number += 1
        if line.__class__ is str:
            line = line.encode("utf-8", "surrogatepass")
        try:
            try:
                payload = SLOW if _WIDE_RUN in line.translate(_DIGITS_AS_ZERO) else loads(line)
            except orjson.JSONDecodeError:
                payload = SLOW
            if payload is SLOW:  # a state is read from its text, never by the record path
                if _STATE_TYPE in line:
                    state = _read_state(line)
                    if state is not None:
                        yield state
                        continue
                payload = _parse_exactly(line, stats)
            if payload.__class__ is not dict:  # `null`, `5`, `[]`: JSON, but not a message
                if payload is BLANK_LINE:
                    continue
                raise UnreadableLine(NOT_A_MESSAGE)
            if payload.get("type") == "STATE":  # also when written with escapes
                state = _read_state(line)
                if state is None:
                    raise UnreadableLine(NOT_A_MESSAGE)
                yield state
                continue
            try:
                message = load(payload)
            except Exception:  # serpyco's errors quote the offending value; report none of it
                raise UnreadableLine(NOT_A_MESSAGE) from None
            if message.type == record and message.record is None:
                raise UnreadableLine(NOT_A_MESSAGE)
        except UnreadableLine as unreadable:
            _skip(line_number, line, unreadable.reason, stats, logger)
            continue
        yield message


SLOW = object()
"""A line orjson cannot read exactly (integers wider than 64 bits, lone surrogates, deep
nesting, invalid JSON): read by `_read_state` if it may be a state, else by `_parse_exactly`."""

BLANK_LINE = object()
"""What `_parse_exactly` returns for a line of whitespace only: skipped without being counted."""


_STATE_TYPE = b'"STATE"'
"""A STATE line holds this, unless its type is written with escapes. Only lines orjson cannot
read are searched for it (a search of every line costs a quarter of a µs): a line orjson reads
is a state when its `type` is, and is then read again from its text."""


def _read_state(line: bytes) -> StateMessage | None:
    """The line's state, None when the line is no STATE message (a record may hold the word).

    A line that is not valid JSON is left to the record path, which names the reason."""
    try:
        return parse_state_line(line)
    except NotJson:
        return None
    except NotAState:
        raise UnreadableLine(NOT_A_MESSAGE) from None


def _parse_exactly(line: bytes, stats: InputStats) -> Any:
    """The standard library keeps big integers exact and reads lone surrogates (then replaced).

    Numbers no Python number holds (beyond a double's range, or integers of more than 4300
    digits, Python's conversion limit) become `json_numbers.RawNumber`s, so such a line is
    still a readable record."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableLine(NOT_UTF8) from None
    if not text.strip():
        return BLANK_LINE
    try:
        payload = json.loads(
            text, parse_constant=_refuse_constant, parse_float=parse_float, parse_int=parse_int
        )
    except RecursionError:
        raise UnreadableLine(NESTED_TOO_DEEP_TO_READ) from None
    except ValueError:  # JSONDecodeError, and the non-standard constants refused below
        raise UnreadableLine(NOT_JSON) from None
    if "\\u" in text:  # only an escape can make a surrogate: UTF-8 bytes cannot
        payload, replaced = _replace_lone_surrogates(payload)
        if replaced:
            stats.repaired_lines += 1
    return payload


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON; orjson refuses them too."""
    raise ValueError(name)


def _replace_lone_surrogates(value: Any) -> tuple[Any, bool]:
    """Every lone surrogate in keys and strings becomes U+FFFD (iterative: depth is unbounded)."""
    replaced = False

    def clean(text: str) -> str:
        nonlocal replaced
        if _SURROGATE.search(text) is None:
            return text
        replaced = True
        return _SURROGATE.sub("\ufffd", text)

    root = [value]
    pending: list[tuple[Any, Any]] = [(root, 0)]
    while pending:
        container, key = pending.pop()
        child = container[key]
        if type(child) is str:
            container[key] = clean(child)
        elif type(child) is dict:
            cleaned = {clean(k): v for k, v in child.items()}
            container[key] = cleaned
            pending.extend((cleaned, k) for k in cleaned)
        elif type(child) is list:
            pending.extend((child, i) for i in range(len(child)))
    return root[0], replaced


def _skip(
    line_number: int, line: bytes, reason: str, stats: InputStats, logger: logging.Logger
) -> None:
    stats.skip(reason)
    if stats.unparseable_lines <= LOGGED_LINES:
        logger.warning(
            f"Input line {line_number} ({len(line.rstrip())} bytes) skipped: {reason}. "
            "It is counted in the final summary."
        )
