"""read_config_file: every way a config file can be unusable gets one sentence, never its text."""

from __future__ import annotations

import os

import pytest

from destination_heap_analytics.airbyte.config_file import (
    ConfigFileError,
    read_catalog_file,
    read_config_file,
)

MARKER = "SECRET-c0nf"


def reason(path) -> str:
    with pytest.raises(ConfigFileError) as raised:
        read_config_file(str(path))
    message = str(raised.value)
    assert MARKER not in message
    assert str(path) in message, "the message names the file"
    return message


@pytest.mark.parametrize(
    "contents, expected",
    [
        (b'{"app_id": "' + MARKER.encode() + b'", ', "is not valid JSON: Expecting"),
        (b'{"app_id": "' + MARKER.encode() + b'"} trailing', "is not valid JSON: Extra data"),
        (b"", "is not valid JSON: Expecting value at line 1, column 1."),
        (b'["' + MARKER.encode() + b'"]', "must hold a JSON object ({...}), not a list."),
        (b'"' + MARKER.encode() + b'"', "must hold a JSON object ({...}), not a string."),
        (b"null", "must hold a JSON object ({...}), not null."),
        (b"\xff\xfe" + MARKER.encode("utf-16-le"), "is not UTF-8 text (byte 1)."),
    ],
)
def test_unusable_contents_are_described_not_quoted(tmp_path, contents, expected):
    path = tmp_path / "config.json"
    path.write_bytes(contents)
    assert expected in reason(path)


def test_a_missing_file_is_named(tmp_path):
    assert reason(tmp_path / "absent.json").endswith("does not exist.")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_says_why(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{}")
    path.chmod(0)
    assert "could not be read: Permission denied." in reason(path)


def test_a_json_object_is_returned_as_is_even_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b'\xef\xbb\xbf{"app_id": "11", "nested": {"a": [1, 2]}}')
    assert read_config_file(str(path)) == {"app_id": "11", "nested": {"a": [1, 2]}}


def test_a_catalog_file_is_loaded_or_described(tmp_path):
    good = tmp_path / "catalog.json"
    good.write_text(
        '{"streams": [{"stream": {"name": "users", "json_schema": {}, "supported_sync_modes":'
        ' ["full_refresh"]}, "sync_mode": "full_refresh", "destination_sync_mode": "append"}]}'
    )
    assert [s.stream.name for s in read_catalog_file(str(good)).streams] == ["users"]
    for contents, reason in [("{", "is not valid JSON"), ('{"streams": 5}', "not a configured")]:
        bad = tmp_path / "bad.json"
        bad.write_text(contents)
        with pytest.raises(ConfigFileError, match=reason):
            read_catalog_file(str(bad))
    with pytest.raises(ConfigFileError, match="does not exist"):
        read_catalog_file(str(tmp_path / "missing.json"))
