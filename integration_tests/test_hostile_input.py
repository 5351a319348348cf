"""What real sources send at the edges, through the real CLI against the sandbox: no line or value
may end the sync, lose a checkpoint, or be sent altered without being counted."""

from __future__ import annotations

import json

from integration_tests.conftest import lines, record_line, run_write, state_line
from integration_tests.test_bulk import config

TRACK_ALL_COLUMNS = {
    "api_type": "track",
    "identity_column": "user",
    "event_column": "event",
    "timestamp_column": "at",
    "property_columns": "*",
}


def good(n: int, **extra: object) -> dict:
    return {
        "user": f"user-{n}",
        "event": "Signed Up",
        "at": "2022-10-21T04:09:54Z",
        "n": n,
        **extra,
    }


def deep_record_line(n: int, depth: int) -> str:
    """A record whose `deep` column holds `depth` nested objects (written out by hand: the
    standard library cannot serialise that deep)."""
    line = record_line(good(n, deep="PLACEHOLDER"))
    return line.replace('"PLACEHOLDER"', '{"k":' * depth + '"leaf"' + "}" * depth)


def summary_of(run) -> str:
    (summary,) = [log for log in run.logs if log.startswith("Sync summary")]
    return summary


def loaded_ns(sandbox) -> list[int]:
    return sorted(event["properties"]["n"] for event in sandbox.accepted("track"))


def test_unreadable_lines_and_incomplete_messages_are_skipped_and_the_sync_completes(
    sandbox, tmp_path
):
    not_utf8 = record_line(good(2, name="caf_")).encode().replace(b"caf_", b"caf\xe9\xff")
    incomplete = [
        {"type": "RECORD"},
        {"type": "STATE"},
        {"type": "RECORD", "record": {"stream": "users", "data": [1], "emitted_at": 1}},
        {"type": "RECORD", "record": "users"},
        {"type": "STATE", "state": {"type": "STREAM"}},
    ]
    stdin = b"".join(
        [
            record_line(good(1)).encode() + b"\n",
            not_utf8 + b"\n",
            *(json.dumps(payload).encode() + b"\n" for payload in incomplete),
            record_line(good(3)).encode() + b"\n",
            state_line(3).encode() + b"\n",
        ]
    )
    run = run_write(tmp_path, config(sandbox.url, api=TRACK_ALL_COLUMNS), stdin)
    assert run.returncode == 0, run.stderr
    assert loaded_ns(sandbox) == [1, 3]
    assert [s["stream"]["stream_state"]["v"] for s in run.states] == [3]
    assert (
        "unparseable input lines skipped: 6 (not a valid Airbyte message: 5, not valid UTF-8: 1)"
        in summary_of(run)
    )
    assert "Traceback" not in run.stderr + run.stdout


def test_deeply_nested_records_are_invalid_rows_never_fatal(sandbox, tmp_path):
    rows = [
        record_line(good(1)),
        deep_record_line(2, 300),
        deep_record_line(3, 1000),
        deep_record_line(4, 1100),  # beyond the depth JSON can be read at
        deep_record_line(5, 200),
        state_line(5),
    ]
    run = run_write(tmp_path, config(sandbox.url, api=TRACK_ALL_COLUMNS), lines(*rows))
    assert run.returncode == 0, run.stderr
    assert loaded_ns(sandbox) == [1, 5]
    assert len(run.states) == 1
    summary = summary_of(run)
    assert "invalid records skipped: 2 (record nested more than 254 levels deep: 2)" in summary
    assert "unparseable input lines skipped: 1 (JSON nested too deeply to read: 1)" in summary
    assert any(log.startswith("Row 2 skipped as invalid: record nested") for log in run.logs)


def test_a_lone_surrogate_is_loaded_as_the_replacement_character_and_counted(sandbox, tmp_path):
    cut = record_line(good(1, note="ab")).replace('"ab"', '"ab\\ud83d"')
    run = run_write(tmp_path, config(sandbox.url, api=TRACK_ALL_COLUMNS), lines(cut))
    assert run.returncode == 0, run.stderr
    (event,) = sandbox.accepted("track")
    assert event["properties"]["note"] == "ab\ufffd"
    assert "lone surrogates replaced by U+FFFD: 1 lines" in summary_of(run)


def test_huge_integers_keep_every_digit_as_identities_keys_and_properties(sandbox, tmp_path):
    ids = [12345678901234567890123, 12345678901234567890124]
    rows = [record_line({**good(n), "user": big, "amount": big}) for n, big in enumerate(ids)]
    run = run_write(tmp_path, config(sandbox.url, api=TRACK_ALL_COLUMNS), lines(*rows))
    assert run.returncode == 0, run.stderr
    events = sorted(sandbox.accepted("track"), key=lambda event: event["properties"]["n"])
    assert [e["identity"] for e in events] == [str(big) for big in ids]
    assert [e["properties"]["amount"] for e in events] == [str(big) for big in ids]
    assert events[0]["idempotency_key"] != events[1]["idempotency_key"]


def test_timestamps_go_out_in_one_utc_form_and_words_are_invalid(sandbox, tmp_path):
    stamps = {
        1: "2022-10-21T04:09:54.622Z",
        2: "2022-10-21T04:09:54",
        3: "2022-10-21 06:09:54+02:00",
        4: 1666325394,
        5: "12:00",
        6: "now",
    }
    rows = [record_line({**good(n), "at": at}) for n, at in stamps.items()]
    run = run_write(tmp_path, config(sandbox.url, api=TRACK_ALL_COLUMNS), lines(*rows))
    assert run.returncode == 0, run.stderr
    sent = {e["properties"]["n"]: e["timestamp"] for e in sandbox.accepted("track")}
    assert sent == {
        1: "2022-10-21T04:09:54.622Z",
        2: "2022-10-21T04:09:54Z",
        3: "2022-10-21T04:09:54Z",
        4: "2022-10-21T04:09:54Z",
    }
    assert "invalid records skipped: 2 (at is not a date-time" in summary_of(run)


def user_properties_api(property_columns: str) -> dict:
    return {
        "api_type": "add_user_properties",
        "identity_column": "user",
        "property_columns": property_columns,
    }


def test_empty_lists_send_nothing_and_name_collisions_are_resolved_and_counted(sandbox, tmp_path):
    api = user_properties_api("tags,plan")
    rows = [
        record_line({"user": "u1", "tags": [], "plan": "pro"}),
        record_line({"user": "u2", "tags": [None], "plan": "free"}),
    ]
    run = run_write(tmp_path, config(sandbox.url, "add_user_properties", api=api), lines(*rows))
    assert run.returncode == 0, run.stderr
    assert sorted(u["properties"]["plan"] for u in sandbox.accepted("add_user_properties")) == [
        "free",
        "pro",
    ]
    assert all("tags" not in u["properties"] for u in sandbox.accepted("add_user_properties"))

    sandbox.reset()
    collide = [
        record_line({"user": "u3", "a.b": "literal", "a": {"b": "nested"}, "": 1}),
        record_line({"a": {"b": "nested"}, "": 1, "a.b": "literal", "user": "u4"}),
    ]
    api = {**api, "property_columns": "*"}
    run = run_write(tmp_path, config(sandbox.url, "add_user_properties", api=api), lines(*collide))
    assert run.returncode == 0, run.stderr
    properties = [u["properties"] for u in sandbox.accepted("add_user_properties")]
    assert [p["a.b"] for p in properties] == ["literal", "literal"]
    assert all("" not in p for p in properties)
    summary = summary_of(run)
    assert "property names that collide after flattening (fewest parts kept): 2" in summary
    assert "property name with an empty part: 2" in summary


def with_literal(data: dict, literal: str) -> str:
    """A record line whose `x` is written as `literal` exactly (json.dumps cannot write 1e400)."""
    return record_line({**data, "x": "LITERAL"}).replace('"LITERAL"', literal)


def test_numbers_beyond_a_doubles_range_are_sent_as_text_and_never_share_a_key(sandbox, tmp_path):
    """Issue 14.4: 1e400, -1e400 and null gave one idempotency key (infinity hashed as null)."""
    literals = {1: "1e400", 2: "-1e400", 3: "null", 4: "1" * 400 + ".5", 5: "[1e400, 2]"}
    rows = [with_literal(good(n), literal) for n, literal in literals.items()]
    run = run_write(tmp_path, config(sandbox.url, api=TRACK_ALL_COLUMNS), lines(*rows))
    assert run.returncode == 0, run.stderr
    events = {event["properties"]["n"]: event for event in sandbox.accepted("track")}
    assert sorted(events) == [1, 2, 3, 4, 5]
    sent = {
        n: {k: v for k, v in e["properties"].items() if k.startswith("x")}
        for n, e in events.items()
    }
    assert sent == {
        1: {"x": "1e400"},
        2: {"x": "-1e400"},
        3: {},
        4: {"x": "1" * 400 + ".5"},
        5: {"x.0": "1e400", "x.1": 2},
    }
    assert len({event["idempotency_key"] for event in events.values()}) == 5
    summary = summary_of(run)
    assert "unparseable input lines skipped: 0;" in summary
    assert "properties dropped: 0;" in summary


def test_float_identities_from_2_53_on_are_invalid_and_integers_are_counted_by_digit(
    sandbox, tmp_path
):
    """Issue 14.5: 9007199254740992.0 and 9007199254740993.0 became one identity, and the
    largest 1023-digit integer was dropped."""
    largest = "9" * 1023
    rows = [
        record_line(good(1)).replace('"user-1"', "9007199254740992.0"),
        record_line(good(2)).replace('"user-2"', "9007199254740993.0"),
        record_line(good(3)).replace('"user-3"', "9007199254740991.0"),
        with_literal(good(4), largest),
        with_literal(good(5), "-" + largest),
    ]
    run = run_write(tmp_path, config(sandbox.url, api=TRACK_ALL_COLUMNS), lines(*rows))
    assert run.returncode == 0, run.stderr
    events = {event["properties"]["n"]: event for event in sandbox.accepted("track")}
    assert sorted(events) == [3, 4, 5]
    assert events[3]["identity"] == "9007199254740991"
    assert events[4]["properties"]["x"] == largest
    assert "x" not in events[5]["properties"], "1024 characters with its sign"
    summary = summary_of(run)
    assert (
        "invalid records skipped: 2 (user is a number too large to be written exactly: 2)"
        in summary
    )
    assert "number longer than 1023 characters as text: 1" in summary


def test_an_integer_of_any_length_is_a_readable_record(sandbox, tmp_path):
    """Issue 14.6: a 5,000-digit integer lost the whole line as "not valid JSON"."""
    huge = "7" * 5000
    rows = [
        with_literal(good(1), huge),
        with_literal(good(2), huge[:-1] + "8"),
        with_literal(good(3), "1" * 1500),
        record_line(good(4)).replace('"user-4"', huge),
        state_line(4),
    ]
    run = run_write(tmp_path, config(sandbox.url, api=TRACK_ALL_COLUMNS), lines(*rows))
    assert run.returncode == 0, run.stderr
    events = {event["properties"]["n"]: event for event in sandbox.accepted("track")}
    assert sorted(events) == [1, 2, 3]
    assert all("x" not in event["properties"] for event in events.values())
    assert events[1]["idempotency_key"] != events[2]["idempotency_key"]
    assert len(run.states) == 1
    summary = summary_of(run)
    assert "unparseable input lines skipped: 0;" in summary
    assert "number longer than 1023 characters as text: 3" in summary
    assert (
        "invalid records skipped: 1 (user is a number too large to be written exactly: 1)"
        in summary
    )


def test_a_column_inside_another_keeps_the_outer_value_and_counts_the_other(sandbox, tmp_path):
    """Issue 14.3: where two listed columns give one name, nothing is overwritten silently."""
    api = user_properties_api("a.b, a")
    rows = [
        record_line({"user": "u1", "a": {"b.c": "literal", "b": {"c": "nested", "d": 1}}}),
        record_line({"user": "u2", "a": {"b": {"c": "nested", "d": 2}}}),
    ]
    run = run_write(tmp_path, config(sandbox.url, "add_user_properties", api=api), lines(*rows))
    assert run.returncode == 0, run.stderr
    users = {u["identity"]: u["properties"] for u in sandbox.accepted("add_user_properties")}
    assert users == {
        "u1": {"a.b.c": "literal", "a.b.d": 1},
        "u2": {"a.b.c": "nested", "a.b.d": 2},
    }
    summary = summary_of(run)
    assert (
        "property names two nested columns give different values (outer column kept): 1" in summary
    )
