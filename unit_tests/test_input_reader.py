"""read_messages: parse Airbyte messages, skip and count bad lines, never log their contents."""

from __future__ import annotations

import json
import logging

import pytest
from airbyte_cdk.models import AirbyteMessage, Type

from destination_heap_analytics.input_reader import LOGGED_LINES, read_messages
from destination_heap_analytics.stats import InputStats

MARKER = "MARKER-123"

RECORD = json.dumps(
    {
        "type": "RECORD",
        "record": {"stream": "events", "data": {"identity": "u1"}, "emitted_at": 1700000000000},
    }
)
STATE = json.dumps(
    {
        "type": "STATE",
        "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": "events"}}},
    }
)
BROKEN_JSON = '{"type": "RECORD", "record": {"data": "' + MARKER + '"'
NOT_A_MESSAGE = json.dumps({"type": "NOPE", "secret": MARKER})


@pytest.fixture
def logger() -> logging.Logger:
    return logging.getLogger("test")


def read(lines: list[str], logger: logging.Logger) -> tuple[list[AirbyteMessage], InputStats]:
    stats = InputStats()
    return list(read_messages(lines, stats, logger)), stats


def test_valid_record_and_state_lines_become_messages(logger):
    messages, stats = read([RECORD + "\n", STATE + "\n"], logger)

    assert [type(m) for m in messages] == [AirbyteMessage, AirbyteMessage]
    assert [m.type for m in messages] == [Type.RECORD, Type.STATE]
    assert messages[0].record.stream == "events"
    assert messages[0].record.data == {"identity": "u1"}
    assert messages[1].state.stream.stream_descriptor.name == "events"
    assert stats.unparseable_lines == 0


@pytest.mark.parametrize("bad", [BROKEN_JSON, NOT_A_MESSAGE, "[1, 2, 3]", '"just a string"'])
def test_bad_line_is_skipped_and_counted(logger, bad):
    messages, stats = read([RECORD, bad, STATE], logger)

    assert [m.type for m in messages] == [Type.RECORD, Type.STATE]
    assert stats.unparseable_lines == 1


def test_blank_lines_are_ignored_and_not_counted(logger, caplog):
    caplog.set_level(logging.DEBUG)

    messages, stats = read(["\n", RECORD, "   \n", "", STATE], logger)

    assert len(messages) == 2
    assert stats.unparseable_lines == 0
    assert caplog.records == []


def test_log_names_line_number_and_length(logger, caplog):
    caplog.set_level(logging.DEBUG)

    read(["\n", RECORD + "\n", BROKEN_JSON + "\n"], logger)

    assert len(caplog.records) == 1
    text = caplog.records[0].getMessage()
    assert "line 3 " in text
    assert f"({len(BROKEN_JSON)} characters)" in text
    assert "not valid JSON" in text


def test_log_identifies_json_that_is_not_a_message(logger, caplog):
    caplog.set_level(logging.DEBUG)

    read([NOT_A_MESSAGE], logger)

    assert len(caplog.records) == 1
    text = caplog.records[0].getMessage()
    assert "line 1 " in text
    assert f"({len(NOT_A_MESSAGE)} characters)" in text
    assert "not a valid Airbyte message" in text


@pytest.mark.parametrize("bad", [BROKEN_JSON, NOT_A_MESSAGE], ids=["broken", "not-a-message"])
def test_log_never_contains_the_line_contents(logger, caplog, bad):
    caplog.set_level(logging.DEBUG)

    read([bad], logger)

    assert caplog.records  # the problem is reported...
    for record in caplog.records:  # ...but nowhere with the line's contents
        assert MARKER not in record.getMessage()
        assert MARKER not in str(record.args)
        assert record.exc_info is None or MARKER not in str(record.exc_info[1])
    assert MARKER not in caplog.text


def test_only_the_first_problems_are_logged_individually(logger, caplog):
    caplog.set_level(logging.DEBUG)
    bad_count = LOGGED_LINES + 5

    messages, stats = read([BROKEN_JSON] * bad_count + [RECORD], logger)

    assert stats.unparseable_lines == bad_count
    assert len(caplog.records) == LOGGED_LINES
    assert "line 1 " in caplog.records[0].getMessage()
    assert f"line {LOGGED_LINES} " in caplog.records[-1].getMessage()
    assert len(messages) == 1


def test_counting_continues_into_existing_stats(logger, caplog):
    caplog.set_level(logging.DEBUG)
    stats = InputStats(unparseable_lines=LOGGED_LINES)

    list(read_messages([BROKEN_JSON, RECORD], stats, logger))

    assert stats.unparseable_lines == LOGGED_LINES + 1
    assert caplog.records == []
