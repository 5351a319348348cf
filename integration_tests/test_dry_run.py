"""Dry run and preview through the real CLI against the sandbox: nothing reaches Heap, no state
goes back, and the counts are those of a real sync."""

from __future__ import annotations

import json
import subprocess

import pytest

from integration_tests.conftest import (
    CATALOG,
    ROOT,
    SAMPLES,
    cli_command,
    lines,
    record_line,
    run_cli,
    run_write,
    sample_config,
    write_json,
)
from integration_tests.test_streams import STREAMS_CATALOG, STREAMS_MESSAGES, streams_config

SAMPLE_MESSAGES = (SAMPLES / "messages.jsonl").read_text()


@pytest.mark.parametrize("api_type", ["track", "add_user_properties", "add_account_properties"])
def test_a_dry_run_sends_nothing_emits_no_state_and_counts_like_a_real_sync(
    sandbox, tmp_path, api_type
):
    messages = SAMPLE_MESSAGES + lines(record_line({"no": "identity"}))
    config = sample_config(api_type, sandbox.url, dry_run=True, batch_size=20)
    run = run_write(tmp_path, config, messages)

    assert run.returncode == 0, run.stderr
    assert sandbox.requests_log() == []
    assert run.states == []
    assert run.logs[1].startswith("Dry run: records are read, checked and transformed")
    assert "Total Messages: 54. Total Records: 51. Total loaded: 0." in run.logs
    assert "Dry run: would load 50 items in 3 requests." in run.logs  # 20 + 20 + 10
    (stream_line,) = [log for log in run.logs if log.startswith("Dry run, stream 'users'")]
    assert f"({api_type}): 51 records, would load 50 items in 3 requests; invalid 1 (" in (
        stream_line
    )
    assert "Item 1: " in stream_line and "Item 3: " in stream_line
    assert run.logs[-2].endswith("(3 states withheld).")

    real = run_write(tmp_path, sample_config(api_type, sandbox.url, batch_size=20), messages)
    assert len(sandbox.requests_log()) == 3, "a real sync sends what the dry run counted"
    assert "Total loaded: 50." in real.logs[-3]


def test_a_dry_run_of_three_streams_counts_each_stream_and_shows_no_values(sandbox, tmp_path):
    run = run_write(
        tmp_path, streams_config(sandbox.url, dry_run=True), STREAMS_MESSAGES, STREAMS_CATALOG
    )
    assert run.returncode == 0, run.stderr
    assert sandbox.requests_log() == [] and run.states == []
    assert "Dry run: would load 20 items in 5 requests." in run.logs
    by_stream = {log.split("'")[1]: log for log in run.logs if log.startswith("Dry run, stream")}
    assert "would load 8 items in 2 requests" in by_stream["public.users"]
    assert "would load 4 items in 1 requests" in by_stream["accounts"]
    assert "subscription_plan: text(4), profile.city: text(4)" in by_stream["public.users"]
    assert "order_total: number, currency: text(3)" in by_stream["orders"]
    output = run.stdout + run.stderr
    for value in ("avery@example.com", "Oslo", "acct-1", "19.99", "s3cr3t-token"):
        assert value not in output


def test_check_in_a_dry_run_posts_no_preflight_event(sandbox, tmp_path):
    config = write_json(tmp_path, "c.json", sample_config("track", sandbox.url, dry_run=True))
    run = run_cli("check", "--config", str(config))
    status = run.connection_status
    assert status["status"] == "SUCCEEDED"
    assert "no preflight event" in status["message"]
    assert sandbox.requests_log() == []


SEED_EXAMPLES = json.loads((SAMPLES / "seed-examples.json").read_text())


def run_preview(tmp_path, config: dict, messages: str, *extra: str) -> subprocess.CompletedProcess:
    config_path = write_json(tmp_path, "preview.json", config)
    return subprocess.run(
        [*cli_command("preview", "--config", str(config_path), "--catalog", str(CATALOG)), *extra],
        input=messages,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


@pytest.mark.parametrize("example", SEED_EXAMPLES, ids=[e["name"] for e in SEED_EXAMPLES])
def test_preview_prints_the_seeds_examples_as_they_would_be_posted(sandbox, tmp_path, example):
    api, expected = example["api"], example["item"]
    config = {"app_id": "11", "base_url": sandbox.url, "api": api}
    messages = lines(record_line({"email": None}), record_line(example["record"]))
    done = run_preview(tmp_path, config, messages, "--limit", "1")

    assert done.returncode == 0, done.stderr
    invalid, item = [json.loads(line) for line in done.stdout.splitlines()]
    assert invalid["row"] == 1 and invalid["invalid"].endswith("is missing or null")
    endpoint = f"{sandbox.url}/api/{api['api_type']}"
    array_key = {"track": "events", "add_user_properties": "users"}.get(api["api_type"], "accounts")
    assert item["endpoint"] == endpoint
    assert set(item["body"]) == {"app_id", array_key}
    assert item["body"]["app_id"] == "11"
    (sent,) = item["body"][array_key]
    sent.pop("idempotency_key", None)
    assert sent == expected
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("Preview: Dry run: would load 1 items in 1 requests.")
    )
    assert sandbox.requests_log() == []


def test_preview_stops_after_the_limit_and_reports_config_errors(tmp_path):
    config = sample_config("track", "https://heapanalytics.com")
    done = run_preview(tmp_path, config, SAMPLE_MESSAGES, "--limit", "3")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 3
    assert "would load 50 items in 3 requests" in done.stderr  # one batch per state

    broken = run_preview(tmp_path, {**config, "app_id": 11}, SAMPLE_MESSAGES)
    assert broken.returncode == 1
    assert broken.stdout == ""
    assert "Invalid configuration field 'app_id'" in broken.stderr
    assert "Traceback" not in broken.stderr
