"""`preview`'s command line: the item limit (issue 14.8); what it prints is tested through the
real CLI in integration_tests/test_dry_run.py."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from destination_heap_analytics.airbyte.preview import run_preview

SAMPLES = Path(__file__).resolve().parents[2] / "sample_files"
RECORDS = b"".join(
    json.dumps(
        {
            "type": "RECORD",
            "record": {"stream": "users", "data": data, "emitted_at": 1},
        }
    ).encode()
    + b"\n"
    for data in (
        {"email": "a@example.com", "event": "e", "n": 1},
        {"email": None},
        {"email": "b@example.com", "event": "e", "n": 2},
    )
)


@pytest.fixture(autouse=True)
def airbyte_logger_restored() -> Iterator[None]:
    """`run_preview` points the `airbyte` logger at its stderr; give it back afterwards."""
    logger = logging.getLogger("airbyte")
    handlers, propagate = list(logger.handlers), logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.propagate = propagate


def preview(
    tmp_path: Path, *limit: str, columns: str = "n", records: bytes = RECORDS
) -> tuple[int, str, str]:
    config = json.loads((SAMPLES / "config-events.json").read_text())
    config.update(
        base_url="https://heap.test",
        api={
            "api_type": "track",
            "identity_column": "email",
            "event_column": "event",
            "property_columns": columns,
        },
    )
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    args = ["--config", str(config_path), "--catalog", str(SAMPLES / "configured_catalog.json")]
    stdout, stderr = io.StringIO(), io.StringIO()
    code = run_preview([*args, *limit], io.BytesIO(records), stdout, stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def test_limit_0_prints_no_items_and_the_summary(tmp_path):
    code, stdout, stderr = preview(tmp_path, "--limit", "0")
    assert code == 0
    assert stdout == ""
    assert "Preview: Dry run: would load 2 items in 1 requests." in stderr


def test_a_limit_shows_that_many_items_and_the_invalid_rows_before_them(tmp_path):
    code, stdout, _ = preview(tmp_path, "--limit", "1")
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert code == 0
    assert [sorted(line) for line in lines] == [["body", "endpoint"]]
    code, stdout, _ = preview(tmp_path, "--limit", "2")
    assert [sorted(json.loads(line)) for line in stdout.splitlines()] == [
        ["body", "endpoint"],
        ["invalid", "row"],
        ["body", "endpoint"],
    ]


@pytest.mark.parametrize("limit", ["-1", "-100", "x", "1.5"])
def test_a_limit_that_is_not_a_count_is_refused_with_a_message(tmp_path, capsys, limit):
    with pytest.raises(SystemExit) as raised:
        preview(tmp_path, "--limit", limit)
    assert raised.value.code == 2
    error = capsys.readouterr().err
    assert "argument --limit:" in error
    assert "Traceback" not in error
    if limit.startswith("-"):
        assert "must be 0 or more" in error


def test_preview_shows_the_syncs_warnings_such_as_a_misspelt_column(tmp_path):
    code, _, stderr = preview(
        tmp_path, columns="amout", records=RECORDS.replace(b'"n"', b'"amount"')
    )
    assert code == 0
    assert "WARN Column 'amout' is missing in all of the first 3 records" in stderr
    assert "Did you mean 'amount'?" in stderr
    assert "a@example.com" not in stderr
