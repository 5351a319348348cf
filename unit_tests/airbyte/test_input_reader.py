"""read_messages: parse Airbyte messages, skip and count bad lines, never log their contents."""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from airbyte_cdk.models import AirbyteMessage, Type
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_heap_analytics.airbyte.input_reader import (
    LOGGED_LINES,
    NOT_UTF8,
    READ_SIZE,
    read_messages,
    stdin_lines,
)
from destination_heap_analytics.airbyte.input_reader import (
    NOT_A_MESSAGE as INCOMPLETE,
)
from destination_heap_analytics.counters import InputStats
from destination_heap_analytics.json_numbers import RawNumber
from destination_heap_analytics.protocol.idle import IDLE
from destination_heap_analytics.protocol.state_message import StateMessage

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


def read(
    lines: list[str | bytes], logger: logging.Logger
) -> tuple[list[AirbyteMessage], InputStats]:
    """Lines as stdin gives them: bytes (text is encoded, as the reader also accepts it)."""
    stats = InputStats()
    raw = [
        line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line for line in lines
    ]
    return list(read_messages(raw, stats, logger)), stats


def test_valid_record_and_state_lines_become_messages(logger):
    messages, stats = read([RECORD + "\n", STATE + "\n"], logger)

    assert [type(m) for m in messages] == [AirbyteMessage, StateMessage]
    assert [m.type for m in messages] == [Type.RECORD, Type.STATE]
    assert messages[0].record.stream == "events"
    assert messages[0].record.data == {"identity": "u1"}
    assert messages[1].stream == (None, "events")
    assert messages[1].text == STATE
    assert stats.unparseable_lines == 0


def test_a_record_holding_the_word_state_is_still_a_record(logger):
    line = json.dumps(
        {"type": "RECORD", "record": {"stream": "s", "data": {"level": "STATE"}, "emitted_at": 1}}
    )
    (message,), stats = read([line], logger)
    assert message.__class__ is AirbyteMessage and message.record.data == {"level": "STATE"}


@pytest.mark.parametrize(
    "payload",
    [
        '{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"s"},'
        '"stream_state":{"cursor":123456789012345678901234567890}}},"id":7}',
        '{"type":"STATE","state":{"data":' + "[" * 3000 + "]" * 3000 + "}}",
        '{"type":"STATE","state":{"type":"GLOBAL","global":{"shared_state":{"c":"a\\ud83d"}}}}',
    ],
    ids=["30-digit cursor", "3000 levels", "lone surrogate"],
)
def test_states_any_parser_would_refuse_or_change_are_read_as_they_are(logger, payload):
    (message,), stats = read([payload + "\n"], logger)
    assert message.__class__ is StateMessage and message.text == payload
    assert stats.unparseable_lines == 0


@pytest.mark.parametrize(
    "payload",
    [
        '{"\\u0074ype":"\\u0053TATE","state":{"type":"LEGACY","data":{"c":1}}}',
        '{"type":"RECORD","state":{"data":{}},"type":"STATE"}',
        '{"type":"STATE","state":{"data":{"n":' + "9" * 40 + '}},"note":"\\ud83d"}',
    ],
    ids=["escaped type", "the last type wins", "wide and escaped"],
)
def test_a_state_is_read_from_its_text_whichever_path_finds_it(logger, payload):
    (message,), stats = read([payload], logger)
    assert message.__class__ is StateMessage and message.text == payload
    assert (stats.unparseable_lines, stats.repaired_lines) == (0, 0)


@pytest.mark.parametrize(
    "data",
    ['{"level":"STATE","n":' + "9" * 40 + "}", '{"level":"STATE","s":"\\ud83d"}'],
    ids=["a wide integer", "a lone surrogate"],
)
def test_a_record_orjson_cannot_read_is_a_record_even_holding_the_word_state(logger, data):
    line = '{"type":"RECORD","record":{"stream":"s","data":' + data + ',"emitted_at":1}}'
    (message,), stats = read([line], logger)
    assert message.__class__ is AirbyteMessage and message.record.data["level"] == "STATE"
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
    assert f"({len(BROKEN_JSON)} bytes)" in text
    assert "not valid JSON" in text


def test_log_identifies_json_that_is_not_a_message(logger, caplog):
    caplog.set_level(logging.DEBUG)

    read([NOT_A_MESSAGE], logger)

    assert len(caplog.records) == 1
    text = caplog.records[0].getMessage()
    assert "line 1 " in text
    assert f"({len(NOT_A_MESSAGE)} bytes)" in text
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
    stats = InputStats(skipped_lines=Counter({"not valid JSON": LOGGED_LINES}))

    list(read_messages([BROKEN_JSON, RECORD], stats, logger))

    assert stats.unparseable_lines == LOGGED_LINES + 1
    assert caplog.records == []


def record_line(data: object) -> str:
    return json.dumps({"type": "RECORD", "record": {"stream": "s", "data": data, "emitted_at": 1}})


def test_a_line_that_is_not_utf8_is_skipped_and_counted_not_fatal(logger):
    bad = record_line({"name": "x"}).encode().replace(b'"x"', b'"caf\xe9 \xff"')
    messages, stats = read([RECORD.encode(), bad, STATE.encode()], logger)
    assert [m.type for m in messages] == [Type.RECORD, Type.STATE]
    assert stats.skipped_lines == {NOT_UTF8: 1}


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "RECORD"},
        {"type": "RECORD", "record": None},
        {"type": "RECORD", "record": "x"},
        {"type": "RECORD", "record": {"stream": "s", "data": [1], "emitted_at": 1}},
        {"type": "RECORD", "record": {"stream": "s", "data": "x", "emitted_at": 1}},
        {"type": "RECORD", "record": {"stream": "s", "data": None, "emitted_at": 1}},
        {"type": "RECORD", "record": {"stream": 5, "data": {}, "emitted_at": 1}},
        {"type": "RECORD", "record": {"data": {}, "emitted_at": 1}},
        {"type": "STATE"},
        {"type": "STATE", "state": None},
        {"type": "STATE", "state": {}},
        {"type": "STATE", "state": {"type": "STREAM"}},
        {"type": "STATE", "state": {"type": "STREAM", "stream": {}}},
        {"type": "STATE", "state": {"type": "GLOBAL"}},
        {"type": "STATE", "state": "x"},
        {"type": "UNKNOWN"},
        {"record": {"stream": "s", "data": {}, "emitted_at": 1}},
    ],
)
def test_json_that_is_not_a_complete_message_is_skipped_by_reason(logger, payload):
    messages, stats = read([json.dumps(payload), RECORD], logger)
    assert [m.type for m in messages] == [Type.RECORD]
    assert stats.skipped_lines == {INCOMPLETE: 1}


@pytest.mark.parametrize(
    "state",
    [
        {"type": "STREAM", "stream": {"stream_descriptor": {"name": "s"}}},
        {"type": "GLOBAL", "global": {"shared_state": {"a": 1}, "stream_states": []}},
        {"data": {"cursor": 1}},
    ],
)
def test_every_kind_of_complete_state_is_kept(logger, state):
    messages, stats = read([json.dumps({"type": "STATE", "state": state})], logger)
    assert [m.type for m in messages] == [Type.STATE] and stats.unparseable_lines == 0


@pytest.mark.parametrize("value", [12345678901234567890123, -(2**70), 2**64, -(2**63) - 1])
def test_integers_wider_than_64_bits_keep_every_digit(logger, value):
    line = record_line({"id": value, "next": value + 1, "f": 1.5, "text": "\u00e9"})
    (message,), _ = read([line], logger)
    assert message.record.data == {"id": value, "next": value + 1, "f": 1.5, "text": "é"}
    assert type(message.record.data["id"]) is int


@pytest.mark.parametrize("line", ["null", "5", "-1.5e3", '"x"', "[]", "true", " null \n"])
def test_json_that_is_not_an_object_is_counted_as_not_a_message(logger, line):
    """Issue 14.9: `null` was skipped without being counted."""
    messages, stats = read([RECORD, line, STATE], logger)
    assert [m.type for m in messages] == [Type.RECORD, Type.STATE]
    assert stats.skipped_lines == Counter({INCOMPLETE: 1})


@pytest.mark.parametrize(
    "literal", ["1e400", "-1e400", "1E+400", "1" * 400 + ".5", "-" + "9" * 5000, "1" * 4301]
)
def test_a_number_no_python_number_holds_is_kept_as_its_text(logger, literal):
    """Issue 14.4 and 14.6: infinity (which orjson writes as null), or the whole line lost to
    Python's 4300-digit limit on int()."""
    line = record_line({"x": "PLACEHOLDER", "big": 2**70}).replace('"PLACEHOLDER"', literal)
    (message,), stats = read([line], logger)
    assert message.record.data == {"x": RawNumber(literal), "big": 2**70}
    assert stats.unparseable_lines == 0
    assert literal not in repr(message.record.data["x"])


@pytest.mark.parametrize("literal, value", [("1e-400", 0.0), ("1" * 4300, int("1" * 4300))])
def test_numbers_a_python_number_holds_stay_python_numbers(logger, literal, value):
    line = record_line({"x": "PLACEHOLDER", "big": 2**70}).replace('"PLACEHOLDER"', literal)
    (message,), _ = read([line], logger)
    assert message.record.data["x"] == value and type(message.record.data["x"]) is type(value)


def test_a_lone_surrogate_becomes_the_replacement_character_and_is_counted(logger):
    line = (
        '{"type":"RECORD","record":{"stream":"s","emitted_at":1,"data":'
        '{"cut":"ab\\ud83d","\\udc00key":["x\\udfff"],"pair":"\\ud83d\\ude00","lit":"\\\\ud83d"}}}'
    )
    (message, _), stats = read([line, line], logger)
    assert message.record.data == {
        "cut": "ab\ufffd",
        "\ufffdkey": ["x\ufffd"],
        "pair": "\U0001f600",
        "lit": "\\ud83d",
    }
    assert stats.repaired_lines == 2 and stats.unparseable_lines == 0


@pytest.mark.parametrize("depth", [1100, 100_000])
def test_json_nested_beyond_the_readers_limit_is_skipped_not_fatal(logger, depth):
    line = '{"type":"RECORD","record":{"stream":"s","emitted_at":1,"data":{"d":'
    line += "[" * depth + "]" * depth + "}}}"
    messages, stats = read([line, RECORD], logger)
    assert [m.type for m in messages] == [Type.RECORD]
    assert stats.unparseable_lines == 1


JSON_TEXT = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(data=st.dictionaries(st.text(max_size=5), JSON_TEXT, max_size=4))
def test_any_record_data_comes_back_exactly(data):
    line = record_line(data)
    (message,), stats = read([line], logging.getLogger("test"))
    assert message.record.data == data and stats.unparseable_lines == 0


@settings(max_examples=300, deadline=None)
@given(line=st.binary(max_size=80))
def test_no_byte_sequence_ends_the_sync(line):
    messages, stats = read([line, RECORD.encode()], logging.getLogger("test"))
    assert messages[-1].type == Type.RECORD
    assert len(messages) + stats.unparseable_lines in (1, 2)


def test_a_state_whose_type_is_written_with_escapes_is_still_a_state(logger):
    line = (
        '{"type":"\\u0053TATE","state":{"type":"STREAM",'
        '"stream":{"stream_descriptor":{"name":"s"}}},"id":3}'
    )
    (message,), stats = read([line], logger)
    assert message.__class__ is StateMessage and message.text == line
    assert message.stream == (None, "s") and stats.unparseable_lines == 0


# --- stdin_lines ------------------------------------------------------------------------------


@pytest.fixture
def pipe() -> Iterator[tuple]:
    read_end, write_end = os.pipe()
    reader = os.fdopen(read_end, "rb")
    writer = os.fdopen(write_end, "wb", buffering=0)
    yield reader, writer
    reader.close()
    if not writer.closed:
        writer.close()


def test_stdin_lines_splits_a_pipe_into_lines_of_any_length(pipe):
    reader, writer = pipe
    long_line = b"x" * (3 * READ_SIZE + 17)
    payload = b"a\n\nb\r\n" + long_line + b"\nlast-without-newline"
    feeder = threading.Thread(target=lambda: (writer.write(payload), writer.close()))
    feeder.start()
    got = [line for line in stdin_lines(reader, idle_seconds=5) if line is not IDLE]
    feeder.join()
    assert got == [b"a", b"", b"b\r", long_line, b"last-without-newline"]


def test_stdin_lines_says_idle_while_the_pipe_is_silent(pipe):
    reader, writer = pipe
    writer.write(b"first\n")
    lines = stdin_lines(reader, idle_seconds=0.01)
    assert next(lines) == b"first"
    assert next(lines) is IDLE  # nothing more, yet the pipe is open
    writer.write(b"second\n")
    assert [line for line in itertools.islice(lines, 50) if line is not IDLE][:1] == [b"second"]


def test_stdin_lines_reads_a_stream_without_a_file_descriptor_as_it_is():
    assert list(stdin_lines(io.BytesIO(b"a\nb\n"))) == [b"a\n", b"b\n"]


def test_idle_passes_through_the_reader_without_counting_a_line(logger):
    messages, stats = read([RECORD, IDLE, RECORD], logger)
    assert [m is IDLE for m in messages] == [False, True, False]
    assert stats.unparseable_lines == 0
