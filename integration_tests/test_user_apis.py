"""Events by user_id, identify and user deletion through the real CLI against the sandbox,
which speaks Heap's documented shapes (Bearer tokens that expire, 401s, identify's silent
ignore rules); states are judged by the platform harness."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest

from integration_tests.conftest import (
    ROOT,
    cli_command,
    record_line,
    run_cli,
    run_write,
    write_json,
)
from integration_tests.heap_sandbox import HeapSandbox
from integration_tests.platform import Platform
from integration_tests.test_platform import start_write

APP_ID = "11"
API_KEY = "the-main-production-key"
MAIN_PRODUCTION = "works only with the Main Production environment's ID"


def catalog(tmp_path: Path, stream: str, *columns: str) -> Path:
    """A catalog of one stream whose schema declares `columns`."""
    schema = {"type": "object", "properties": {c: {"type": ["null", "string"]} for c in columns}}
    configured = {
        "stream": {
            "name": stream,
            "json_schema": schema,
            "supported_sync_modes": ["full_refresh", "incremental"],
        },
        "sync_mode": "incremental",
        "destination_sync_mode": "append",
        "cursor_field": ["updated_at"],
    }
    return write_json(tmp_path, f"catalog-{stream}.json", {"streams": [configured]})


def config(sandbox: HeapSandbox, api: dict, **overrides) -> dict:
    return {
        "app_id": APP_ID,
        "base_url": sandbox.url,
        "max_events_per_minute": 0,
        "api": api,
        **overrides,
    }


def state(stream: str, value: int) -> str:
    return json.dumps(
        {
            "type": "STATE",
            "state": {
                "type": "STREAM",
                "stream": {"stream_descriptor": {"name": stream}, "stream_state": {"n": value}},
            },
        }
    )


def trace_error(run) -> dict:
    (trace,) = run.of_type("TRACE")
    return trace["trace"]["error"]


# --- events by user_id -------------------------------------------------------------------------


def test_events_named_by_user_id_reach_heap_as_user_id_and_bad_ones_are_counted(sandbox, tmp_path):
    api = {
        "api_type": "track",
        "user_id_column": "sdk",
        "event_name": "Seen",
        "property_columns": "plan",
    }
    values = [42, "43", 44.0, "0045", -1, "Zq9-4.5", 2**53, "9007199254740991", None, True]
    source = [record_line({"sdk": v, "plan": "pro"}, "visits") for v in values]
    platform = Platform()
    run = run_write(
        tmp_path,
        config(sandbox, api, batch_size=3),
        platform.forward([*source, state("visits", 1)]),
        catalog(tmp_path, "visits", "sdk", "plan"),
    )

    assert run.returncode == 0, run.stderr
    verdict = platform.judge(run.stdout)
    verdict.assert_ok()
    assert verdict.counts == {1: (5.0, 5.0)}
    sent = sandbox.accepted("track")
    assert sorted(item["user_id"] for item in sent) == sorted(
        ["42", "43", "44", "45", "9007199254740991"]
    )
    assert all("identity" not in item for item in sent)
    assert len(sandbox.events(user_id="45")) == 1
    summary = next(log for log in run.logs if log.startswith("Sync summary"))
    assert "invalid records skipped: 5 (sdk is not a user_id" in summary
    assert "sdk is missing or null: 1" in summary
    assert "Zq9" not in "\n".join(run.logs)


# --- identify ----------------------------------------------------------------------------------

IDENTIFY = {
    "api_type": "identify",
    "identity_column": "email",
    "user_id_column": "sdk",
    "timestamp_column": "at",
}


def test_identify_sends_each_pair_alone_and_skips_what_heap_would_ignore(sandbox, tmp_path):
    pairs = [("ann@x.io", 1, "2026-01-02T03:04:05Z"), ("bob@x.io", 1, None), ("ann@x.io", 1, "")]
    pairs += [("ann@x.io", n, None) for n in range(2, 11)]  # ann's user_ids 1 to 10
    pairs += [("ann@x.io", 11, None), ("cat@x.io", 11, "2026-01-02")]
    source = [record_line({"email": e, "sdk": str(n), "at": at}, "links") for e, n, at in pairs]
    platform = Platform()
    paced = config(sandbox, IDENTIFY, max_concurrent_requests=4)
    del paced["max_events_per_minute"]  # Heap's documented pacing, per identity
    run = run_write(
        tmp_path,
        paced,
        platform.forward([*source[:7], state("links", 1), *source[7:], state("links", 2)]),
        catalog(tmp_path, "links", "email", "sdk", "at"),
    )

    assert run.returncode == 0, run.stderr
    verdict = platform.judge(run.stdout)
    verdict.assert_ok()
    assert verdict.counts == {1: (6.0, 1.0), 2: (6.0, 1.0)}
    calls = sandbox.identify_calls()
    assert sorted(c["outcome"] for c in calls) == ["applied"] * 11 + ["repeated"]
    assert sandbox.identities() == {
        APP_ID: {"1": "ann@x.io", **{str(n): "ann@x.io" for n in range(2, 11)}, "11": "cat@x.io"}
    }
    first = next(c for c in calls if c["user_id"] == "1" and "timestamp" in c)
    assert first["timestamp"] == "2026-01-02T03:04:05Z"
    assert next(c for c in calls if c["user_id"] == "11")["timestamp"] == "2026-01-02T00:00:00Z"
    log = sandbox.requests_log()
    assert {(entry["form"], entry["items"]) for entry in log} == {("single", 1)}
    logs = "\n".join(run.logs)
    assert "Row 2 skipped as invalid: user_id already identified with another identity" in logs
    assert "Row 13 skipped as invalid: identity already has 10 user_ids in this sync" in logs
    summary = next(line for line in run.logs if line.startswith("Sync summary"))
    assert "invalid records skipped: 2 (" in summary and "would ignore this pair" in summary
    assert not re.search(r"(ann|bob|cat)@x\.io", logs)


def test_identify_is_retried_like_the_single_forms(sandbox, tmp_path):
    sandbox.script("identify", {"status": 503}, {"drop": True})
    run = run_write(
        tmp_path,
        config(sandbox, IDENTIFY),
        record_line({"email": "ann@x.io", "sdk": 5}, "links") + "\n",
        catalog(tmp_path, "links", "email", "sdk", "at"),
    )
    assert run.returncode == 0, run.stderr
    assert [c["outcome"] for c in sandbox.identify_calls()] == ["applied"]
    assert "retries: 2 (" in next(log for log in run.logs if log.startswith("Sync summary"))


# --- user deletion -----------------------------------------------------------------------------

DELETE_BY_IDENTITY = {"api_type": "delete_users", "identity_column": "email"}
DELETE_BY_USER_ID = {"api_type": "delete_users", "user_id_column": "sdk"}


def with_key(sandbox: HeapSandbox) -> HeapSandbox:
    sandbox.set_auth(api_keys={APP_ID: [API_KEY]})
    return sandbox


def deletions(count: int, start: int = 0) -> list[str]:
    return [record_line({"email": f"user-{n}@x.io"}, "gone") for n in range(start, start + count)]


def test_25000_users_go_in_three_requests_with_the_token_renewed_on_a_401(sandbox, tmp_path):
    with_key(sandbox).script("user_deletion", {"pass": True}, {"expire_token": True})
    source = [
        *deletions(10_000),
        state("gone", 1),
        *deletions(10_000, 10_000),
        state("gone", 2),
        *deletions(5_000, 20_000),
        state("gone", 3),
    ]
    platform = Platform()
    run = run_write(
        tmp_path,
        config(sandbox, DELETE_BY_IDENTITY, api_key=API_KEY, max_concurrent_requests=1),
        platform.forward(source),
        catalog(tmp_path, "gone", "email"),
    )

    assert run.returncode == 0, run.stderr
    verdict = platform.judge(run.stdout)
    verdict.assert_ok()
    assert verdict.returned == [1, 2, 3]
    requests = sandbox.deletion_requests()
    assert [len(r["users"]) for r in requests] == [10_000, 10_000, 5_000]
    assert [r["token_number"] for r in requests] == [1, 2, 2]
    assert [u["identity"] for r in requests for u in r["users"]] == [
        f"user-{n}@x.io" for n in range(25_000)
    ]
    logged = [log for log in run.logs if log.startswith("Heap accepted deletion request")]
    assert logged == [
        f"Heap accepted deletion request {r['deletion_request_id']} of {len(r['users'])} users "
        "of stream 'gone'."
        for r in requests
    ]
    assert (
        "Deletions: Heap accepted 3 deletion requests for 25000 users (each request's "
        "deletion_request_id is logged above)." in run.logs
    )
    assert "user-" not in "\n".join(run.logs)
    assert API_KEY not in run.stdout + run.stderr


def test_user_ids_are_deleted_as_json_integers(sandbox, tmp_path):
    with_key(sandbox)
    source = [record_line({"sdk": v}, "gone") for v in [7, "8", 9.0, "x"]]
    run = run_write(
        tmp_path,
        config(sandbox, DELETE_BY_USER_ID, api_key=API_KEY),
        "\n".join(source) + "\n",
        catalog(tmp_path, "gone", "sdk"),
    )
    assert run.returncode == 0, run.stderr
    (request,) = sandbox.deletion_requests()
    assert request["users"] == [{"user_id": 7}, {"user_id": 8}, {"user_id": 9}]


def test_a_wrong_key_fails_the_sync_naming_api_key_and_deletes_nothing(sandbox, tmp_path):
    with_key(sandbox)
    run = delete(sandbox, tmp_path, 3, api_key="not-the-key")
    assert run.returncode == 1
    error = trace_error(run)
    assert error["failure_type"] == "config_error"
    assert "'api_key'" in error["message"] and MAIN_PRODUCTION in error["message"]
    assert run.states == [] and sandbox.deletion_requests() == []
    assert "not-the-key" not in run.stdout + run.stderr


def delete(sandbox: HeapSandbox, tmp_path: Path, count: int, *columns: str, **overrides):
    """A write of `count` deletions by email, its catalog declaring `columns` (`email`)."""
    return run_write(
        tmp_path,
        config(sandbox, DELETE_BY_IDENTITY, **{"api_key": API_KEY, **overrides}),
        "\n".join(deletions(count)) + "\n",
        catalog(tmp_path, "gone", *(columns or ("email",))),
    )


def test_a_401_after_a_new_token_fails_the_sync_naming_api_key(sandbox, tmp_path):
    with_key(sandbox).script("user_deletion", {"expire_token": True, "times": 2})
    run = delete(sandbox, tmp_path, 2)
    assert run.returncode == 1
    error = trace_error(run)
    assert error["failure_type"] == "config_error"
    assert "'api_key'" in error["message"] and MAIN_PRODUCTION in error["message"]
    assert sandbox.deletion_requests() == [] and sandbox.auth()["tokens"][1]["number"] == 2


def test_a_refused_deletion_request_is_isolated_by_resending_only_its_own_users(sandbox, tmp_path):
    with_key(sandbox).script("user_deletion", {"status": 400, "message": "users: refused"})
    run = delete(sandbox, tmp_path, 40)
    assert run.returncode == 0, run.stderr
    asked = [f"user-{n}@x.io" for n in range(40)]
    sent = [[u["identity"] for u in r["users"]] for r in sandbox.deletion_requests()]
    assert len(sent) > 1 and all(set(users) <= set(asked) for users in sent)
    assert sorted(name for users in sent for name in users) == sorted(asked)  # each once


def test_a_deletion_column_the_catalog_does_not_declare_is_refused_before_anything(
    sandbox, tmp_path
):
    with_key(sandbox)
    run = delete(sandbox, tmp_path, 2, "mail")
    assert run.returncode == 1
    error = trace_error(run)
    assert error["failure_type"] == "config_error"
    assert "stream 'gone' deletes users by the column 'email'" in error["message"]
    assert sandbox.requests_log() == []


def test_a_deletion_mapping_without_api_key_is_a_config_error(sandbox, tmp_path):
    run = delete(sandbox, tmp_path, 1, api_key="")
    assert run.returncode == 1
    assert trace_error(run)["message"].startswith("Invalid configuration field 'api_key'")


def test_check_obtains_a_token_deletes_nothing_and_names_a_wrong_key(sandbox, tmp_path):
    with_key(sandbox)
    right = write_json(tmp_path, "right.json", config(sandbox, DELETE_BY_IDENTITY, api_key=API_KEY))
    assert run_cli("check", "--config", str(right)).connection_status["status"] == "SUCCEEDED"
    assert sandbox.counters()["tokens_issued"] == 1 and sandbox.deletion_requests() == []

    wrong = write_json(tmp_path, "wrong.json", config(sandbox, DELETE_BY_IDENTITY, api_key="x"))
    status = run_cli("check", "--config", str(wrong)).connection_status
    assert status["status"] == "FAILED"
    assert "Check the 'api_key' setting" in status["message"]
    assert MAIN_PRODUCTION in status["message"]


def test_a_dry_run_counts_the_deletions_and_preview_shows_the_users(sandbox, tmp_path):
    with_key(sandbox)
    dry = run_write(
        tmp_path,
        config(sandbox, DELETE_BY_IDENTITY, api_key=API_KEY, dry_run=True),
        "\n".join(deletions(12_000)) + "\n",
        catalog(tmp_path, "gone", "email"),
    )
    assert dry.returncode == 0, dry.stderr
    assert sandbox.requests_log() == []
    assert any(
        "'gone' (delete_users): 12000 records, would delete 12000 users in 2 requests" in log
        for log in dry.logs
    )
    assert "user-" not in "\n".join(dry.logs)

    config_path = write_json(
        tmp_path, "preview.json", config(sandbox, DELETE_BY_IDENTITY, api_key=API_KEY)
    )
    catalog_path = catalog(tmp_path, "gone", "email")
    shown = subprocess.run(
        [*cli_command("preview", "--config", str(config_path), "--catalog", str(catalog_path))],
        input="\n".join(deletions(2)) + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert [json.loads(line) for line in shown.stdout.splitlines()] == [
        {
            "endpoint": f"{sandbox.url}/api/public/v0/user_deletion",
            "body": {"users": [{"identity": f"user-{n}@x.io"}]},
        }
        for n in range(2)
    ]
    assert sandbox.requests_log() == []


def test_a_sync_stopped_between_deletion_requests_emits_no_state_past_the_unanswered_one(
    sandbox, tmp_path
):
    """The first request is answered, the second hangs in Heap; SIGTERM stops the sync. Only
    the state before the hanging request comes back; a rerun from it deletes the rest."""
    with_key(sandbox).script("user_deletion", {"pass": True}, {"hang": True})
    source = [*deletions(10_000), state("gone", 1), *deletions(10_000, 10_000), state("gone", 2)]
    platform = Platform()
    settings = config(sandbox, DELETE_BY_IDENTITY, api_key=API_KEY, max_concurrent_requests=1)
    catalog_path = catalog(tmp_path, "gone", "email")
    process = start_write(tmp_path, settings, catalog_path)
    process.stdin.write(platform.forward(source))
    process.stdin.flush()  # stdin stays open: the source has not finished
    assert sandbox.wait_hanging(1, timeout=60)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 143, stderr
    verdict = platform.judge(stdout, delivered_everything=False)
    verdict.assert_ok()
    assert verdict.returned == [1]
    assert [len(r["users"]) for r in sandbox.deletion_requests()] == [10_000]
    assert "Traceback" not in stderr

    sandbox.release()
    rerun_platform = Platform()
    rerun = run_write(tmp_path, settings, rerun_platform.forward(source[10_001:]), catalog_path)
    assert rerun.returncode == 0, rerun.stderr
    rerun_platform.judge(rerun.stdout).assert_ok()
    deleted = [u["identity"] for r in sandbox.deletion_requests() for u in r["users"]]
    assert deleted == [f"user-{n}@x.io" for n in range(20_000)]


@pytest.mark.parametrize("api", [DELETE_BY_IDENTITY, IDENTIFY])
def test_every_record_of_the_new_apis_counts_on_its_state(sandbox, tmp_path, api):
    with_key(sandbox)
    source = [record_line({"email": f"u{n}@x.io", "sdk": n}, "s") for n in range(5)] + [
        record_line({"sdk": 1}, "s"),
        state("s", 1),
    ]
    platform = Platform()
    run = run_write(
        tmp_path,
        config(sandbox, api, api_key=API_KEY),
        platform.forward(source),
        catalog(tmp_path, "s", "email", "sdk", "at"),
    )
    assert run.returncode == 0, run.stderr
    verdict = platform.judge(run.stdout)
    verdict.assert_ok()
    assert verdict.counts == {1: (5.0, 1.0)}
