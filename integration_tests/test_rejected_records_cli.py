"""Rejected records through the real CLI: a sync against the Heap sandbox with a bucket on moto's
S3 server; the platform harness judges the states and their rejectedRecordCount."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess

from integration_tests.conftest import (
    ROOT,
    cli_command,
    lines,
    record_line,
    run_cli,
    run_write,
    write_json,
)
from integration_tests.platform import Platform
from integration_tests.test_platform import Output, catalog, stream_state, track_config

MARKER = "SECRET-REJECTED-7f3a"


def storage(s3_server, bucket: str, **overrides) -> dict:
    keys = s3_server.credentials()
    return {
        "storage_type": "S3",
        "s3_bucket_name": bucket,
        "s3_bucket_region": "us-east-1",
        "bucket_path": "rejects",
        "s3_endpoint": s3_server.url,
        "access_key_id": keys["aws_access_key_id"],
        "secret_access_key": keys["aws_secret_access_key"],
        **overrides,
    }


def stored_lines(s3_server, bucket: str) -> list[dict]:
    found = []
    for key, body in s3_server.objects(bucket).items():
        if key.endswith(".gz"):
            body = gzip.decompress(body)
        found += [json.loads(line) for line in body.decode().splitlines()]
    return found


def a_sync_with_bad_rows() -> list[str]:
    return [
        record_line({"user": "u1", "n": 1}),
        record_line({"n": MARKER}),  # no user: invalid
        record_line({"user": "u3", "note": f"{MARKER}-refuse-me"}),  # refused by "Heap"
        stream_state("users", 1),
        record_line({"user": "u4", "n": 4}),
        stream_state("users", 2),
    ]


def test_invalid_and_refused_rows_land_in_the_bucket_with_their_reasons(
    sandbox, s3_server, s3_bucket, tmp_path
):
    sandbox.set_faults(reject_marker="refuse-me")
    platform = Platform()
    config = track_config(sandbox.url, object_storage_config=storage(s3_server, s3_bucket))
    catalog_path = catalog(tmp_path, (None, "users"))

    run = run_write(tmp_path, config, platform.forward(a_sync_with_bad_rows()), catalog_path)

    assert run.returncode == 0, run.stderr
    verdict = platform.judge(run.stdout)
    verdict.assert_ok()
    assert verdict.counts == {1: (1.0, 2.0), 2: (1.0, 0.0)}
    stored = sorted(stored_lines(s3_server, s3_bucket), key=lambda line: line["row"])
    assert [(line["row"], line["stream"], line["namespace"]) for line in stored] == [
        (2, "users", None),
        (3, "users", None),
    ]
    invalid, refused = stored
    assert invalid["data"] == {"n": MARKER}
    assert invalid["reason"] == {
        "kind": "invalid",
        "reason": "user is missing or null",
        "column": "user",
        "rule": "is missing or null",
    }
    assert refused["data"]["identity"] == "u3"
    assert refused["data"]["properties"]["note"] == f"{MARKER}-refuse-me"
    assert refused["reason"]["kind"] == "refused" and refused["reason"]["status"] == 400
    keys = s3_server.keys_in(s3_bucket)
    assert all(key.startswith("rejects/run-") and "/~no_namespace/users/" in key for key in keys)
    assert any("Rejected records stored: 2 records in" in log for log in run.logs)
    assert MARKER not in run.stderr
    assert MARKER not in "\n".join(line for line in run.stdout.split("\n") if "STATE" not in line)


def test_the_platforms_sync_id_names_the_folder(sandbox, s3_server, s3_bucket, tmp_path):
    config = track_config(sandbox.url, object_storage_config=storage(s3_server, s3_bucket))
    configured = json.loads(catalog(tmp_path, (None, "users")).read_text())
    for stream in configured["streams"]:
        stream.update(sync_id=4242, generation_id=0, minimum_generation_id=0)
    catalog_path = write_json(tmp_path, "with_sync_id.json", configured)

    run = run_write(tmp_path, config, lines(record_line({"n": 1})), catalog_path)

    assert run.returncode == 0, run.stderr
    (key,) = s3_server.keys_in(s3_bucket)
    assert key.startswith("rejects/4242/~no_namespace/users/")


def test_a_bucket_that_cannot_be_written_fails_check_and_write_naming_the_setting(
    sandbox, s3_server, tmp_path
):
    config = track_config(
        sandbox.url, object_storage_config=storage(s3_server, "no-such-bucket-for-rejects")
    )
    config_path = write_json(tmp_path, "config.json", config)

    check = run_cli("check", "--config", str(config_path))
    status = check.connection_status
    assert status["status"] == "FAILED"
    assert "object_storage_config.s3_bucket_name" in status["message"]

    platform = Platform()
    run = run_write(
        tmp_path,
        config,
        platform.forward(a_sync_with_bad_rows()),
        catalog(tmp_path, (None, "users")),
    )
    assert run.returncode == 1
    (trace,) = run.of_type("TRACE")
    error = trace["trace"]["error"]
    assert error["failure_type"] == "config_error"
    assert "object_storage_config" in error["message"]
    assert "Traceback" not in run.stderr
    verdict = platform.judge(run.stdout, delivered_everything=False)
    verdict.assert_ok()
    assert verdict.returned == []  # state 1 covers rows that could not be stored


def test_check_with_a_working_bucket_leaves_it_empty(sandbox, s3_server, s3_bucket, tmp_path):
    config = track_config(sandbox.url, object_storage_config=storage(s3_server, s3_bucket))
    check = run_cli("check", "--config", str(write_json(tmp_path, "config.json", config)))
    assert check.connection_status["status"] == "SUCCEEDED", check.connection_status
    assert s3_server.keys_in(s3_bucket) == []


def test_sigterm_leaves_no_state_past_rows_whose_rejections_were_not_stored(
    sandbox, s3_server, s3_bucket, tmp_path
):
    """State 1's rejected row is stored, then Heap hangs on the next batch; SIGTERM brings out
    state 1 (its refusal no longer waits to settle: the sync is not stopping because Heap
    refuses most records) and nothing after it."""
    sandbox.set_faults(reject_marker="refuse-me")
    # the batch of u1 and u2 is refused, then both are probed; the next batch hangs
    sandbox.script("track", {"pass": True, "times": 3}, {"hang": True})
    config = track_config(
        sandbox.url,
        object_storage_config=storage(s3_server, s3_bucket),
        batch_size=2,
        max_concurrent_requests=1,
    )
    source = [
        record_line({"user": "u1"}),
        record_line({"user": "u2", "note": "refuse-me"}),
        stream_state("users", 1),
        record_line({"user": "u3"}),
        record_line({"user": "u4"}),
        stream_state("users", 2),
    ]
    platform = Platform()
    config_path = write_json(tmp_path, "config.json", config)
    process = subprocess.Popen(
        cli_command(
            "write",
            "--config",
            str(config_path),
            "--catalog",
            str(catalog(tmp_path, (None, "users"))),
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    output = Output(process)
    process.stdin.write(platform.forward(source))
    process.stdin.flush()
    assert sandbox.wait_hanging(1, timeout=30)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 143
    verdict = platform.judge(output.text(), delivered_everything=False)
    verdict.assert_ok()
    assert verdict.returned == [1] and verdict.counts == {1: (1.0, 1.0)}
    (stored,) = stored_lines(s3_server, s3_bucket)
    assert stored["row"] == 2


def test_each_streams_line_says_where_its_rejected_records_went(
    sandbox, s3_server, s3_bucket, tmp_path
):
    config = track_config(sandbox.url, object_storage_config=storage(s3_server, s3_bucket))
    messages = lines(
        record_line({"user": "u1"}, "users"),
        record_line({"n": "no user"}, "orders"),
    )
    run = run_write(
        tmp_path, config, messages, catalog(tmp_path, (None, "users"), (None, "orders"))
    )

    assert run.returncode == 0, run.stderr
    (orders,) = [log for log in run.logs if log.startswith("Stream 'orders'")]
    assert orders.endswith(f"Its rejected records are under s3://{s3_bucket}/rejects/") is False
    assert f"Its rejected records are under s3://{s3_bucket}/rejects/run-" in orders
    assert orders.endswith("/~no_namespace/orders/")
    (users,) = [log for log in run.logs if log.startswith("Stream 'users'")]
    assert "rejected records are under" not in users
    (key,) = s3_server.keys_in(s3_bucket)
    assert f"s3://{s3_bucket}/{key}".startswith(orders.rsplit(" ", 1)[1])
