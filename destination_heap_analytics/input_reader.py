"""Read Airbyte messages from stdin without ever logging a line's contents.

The CDK's reader logs a line it cannot parse in full (record contents included) and crashes on
valid JSON that is not a message, quoting the value. This one logs the line number, length and
the kind of problem, counts the line, and carries on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import orjson
from airbyte_cdk.models import AirbyteMessage, AirbyteMessageSerializer

from destination_heap_analytics.stats import InputStats

LOGGED_LINES = 10
"""Unparseable lines logged one by one; the rest are counted in the summary."""


def read_messages(
    lines: Iterable[str], stats: InputStats, logger: logging.Logger
) -> Iterator[AirbyteMessage]:
    for line_number, line in enumerate(lines, start=1):
        try:
            payload = orjson.loads(line)
        except orjson.JSONDecodeError:
            if line.strip():
                _skip(line_number, line, "not valid JSON", stats, logger)
            continue
        try:
            yield AirbyteMessageSerializer.load(payload)
        except Exception:  # serpyco's errors quote the offending value; report none of it
            _skip(line_number, line, "JSON that is not a valid Airbyte message", stats, logger)


def _skip(
    line_number: int, line: str, problem: str, stats: InputStats, logger: logging.Logger
) -> None:
    stats.unparseable_lines += 1
    if stats.unparseable_lines <= LOGGED_LINES:
        logger.warning(
            f"Input line {line_number} ({len(line.rstrip())} characters) skipped: {problem}. "
            "It is counted in the final summary."
        )
