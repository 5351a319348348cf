"""RejectedRecords and check_object_storage against a real S3-protocol server (moto, in its own
process on 127.0.0.1), over real HTTP: what lands in the bucket, when, and how failures end."""

from __future__ import annotations

import gzip
import json
import threading
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from destination_heap_analytics.config.settings import S3Storage
from destination_heap_analytics.delivery.rejected_records import (
    BufferLimits,
    ObjectStorageError,
    RejectedRecords,
    check_object_storage,
    key_segment,
)
from destination_heap_analytics.delivery.retry import Cancelled, RetryPolicy
from integration_tests.s3_server import ANY_KEY, REGION, S3FaultProxy, S3Server
from unit_tests.fakes import FakeClock
from unit_tests.strategies import json_values as any_json

STARTED = datetime(2026, 11, 27, 9, 30, 0, 123456, tzinfo=UTC)
FILE_STEM = "2026-11-27_2026-11-27T09:30:00.123Z"
MARK = "Zq9secret"
"""In every value of a rejected record: it must reach the bucket and no message."""
INVALID = {"kind": "invalid", "rule": "identity is missing", "column": "email"}
REFUSED = {"kind": "refused", "status": 400, "message": "events properties longer than 1023"}


def storage_for(
    server: S3Server | S3FaultProxy, bucket: str, keys: dict | None = None, **overrides
) -> S3Storage:
    credentials = keys or ANY_KEY
    settings = {
        "bucket_name": bucket,
        "bucket_path": "airbyte/rejected",
        "region": REGION,
        "endpoint": server.url,
        "access_key_id": credentials["aws_access_key_id"],
        "secret_access_key": credentials["aws_secret_access_key"],
        **overrides,
    }
    return S3Storage(**settings)


def store_for(storage: S3Storage, sync_id: int | str | None = 4711, **options) -> RejectedRecords:
    options.setdefault("started_at", STARTED)
    clock = options.pop("clock", FakeClock())
    policy = options.pop("policy", RetryPolicy(max_retry_seconds=60))
    return RejectedRecords(storage, sync_id, clock, policy, **options)


def lines_of(body: bytes) -> list[dict]:
    """JSON Lines end at `\n` alone (str.splitlines would also cut at U+0085 and U+2028, which
    JSON strings may hold raw)."""
    text = body.decode("utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.removesuffix("\n").split("\n")]


def all_lines(server: S3Server, bucket: str) -> list[dict]:
    return [line for body in server.objects(bucket).values() for line in lines_of(body)]


def test_layout_and_lines_follow_airbytes_default(s3_server, s3_bucket):
    store = store_for(storage_for(s3_server, s3_bucket))
    user = {"email": None, "name": f"{MARK} Ann", "plan": {"tier": "pro"}}
    event = {"event": "Order", "properties": {"note": MARK * 3}}

    store.add("public", "users", 3, user, INVALID)
    store.add("public", "users", 9, {"email": ""}, INVALID)
    store.add(None, "events", 1, event, REFUSED)
    store.flush()

    prefix = "airbyte/rejected/4711"
    objects = s3_server.objects(s3_bucket)
    assert sorted(objects) == [
        f"{prefix}/public/users/{FILE_STEM}_0.jsonl",
        f"{prefix}/~no_namespace/events/{FILE_STEM}_0.jsonl",
    ]
    assert store.prefix() == f"s3://{s3_bucket}/{prefix}/"
    assert lines_of(objects[f"{prefix}/public/users/{FILE_STEM}_0.jsonl"]) == [
        {"stream": "users", "namespace": "public", "row": 3, "reason": INVALID, "data": user},
        {
            "stream": "users",
            "namespace": "public",
            "row": 9,
            "reason": INVALID,
            "data": {"email": ""},
        },
    ]
    assert lines_of(objects[f"{prefix}/~no_namespace/events/{FILE_STEM}_0.jsonl"]) == [
        {"stream": "events", "namespace": None, "row": 1, "reason": REFUSED, "data": event}
    ]
    assert (store.added, store.stored, store.objects) == (3, 3, 2)


def test_an_empty_bucket_path_puts_the_sync_folder_at_the_root(s3_server, s3_bucket):
    store = store_for(storage_for(s3_server, s3_bucket, bucket_path=""), sync_id=8)
    store.add("s", "t", 1, {}, INVALID)
    store.flush()
    assert s3_server.keys_in(s3_bucket) == [f"8/s/t/{FILE_STEM}_0.jsonl"]
    assert store.prefix() == f"s3://{s3_bucket}/8/"


def test_without_a_sync_id_the_folder_is_a_run_id_from_the_utc_start(s3_server, s3_bucket):
    paris = timezone(timedelta(hours=1))
    store = store_for(
        storage_for(s3_server, s3_bucket),
        sync_id=None,
        started_at=datetime(2026, 11, 27, 10, 30, 5, tzinfo=paris),
    )
    store.add("s", "t", 1, {}, INVALID)
    store.flush()

    assert store.prefix() == f"s3://{s3_bucket}/airbyte/rejected/run-20261127T093005Z/"
    assert s3_server.keys_in(s3_bucket) == [
        "airbyte/rejected/run-20261127T093005Z/s/t/2026-11-27_2026-11-27T09:30:05.000Z_0.jsonl"
    ]


def test_parts_are_numbered_per_stream_and_never_exceed_the_part_size(s3_server, s3_bucket):
    limits = BufferLimits(part_bytes=1_000, buffer_bytes=100_000)
    store = store_for(storage_for(s3_server, s3_bucket), limits=limits)
    for row in range(1, 61):
        store.add("ns", "users", row, {"padding": "x" * (row % 7) * 10}, INVALID)
    store.add("ns", "users", 61, {"huge": "y" * 3_000}, INVALID)  # longer than a whole part
    store.add("ns", "users", 62, {}, INVALID)
    store.flush()

    objects = s3_server.objects(s3_bucket)
    folder = "airbyte/rejected/4711/ns/users"
    assert list(objects) == sorted(
        f"{folder}/{FILE_STEM}_{number}.jsonl" for number in range(len(objects))
    )
    ordered = [objects[f"{folder}/{FILE_STEM}_{n}.jsonl"] for n in range(len(objects))]
    rows = [line["row"] for body in ordered for line in lines_of(body)]
    assert rows == list(range(1, 63))
    oversized = [body for body in ordered if len(body) > limits.part_bytes]
    assert len(oversized) == 1 and len(lines_of(oversized[0])) == 1  # the huge line, alone
    assert len(objects) >= 10


def test_a_full_buffer_uploads_before_any_flush(s3_server, s3_bucket):
    limits = BufferLimits(part_bytes=10_000, buffer_bytes=2_000)
    store = store_for(storage_for(s3_server, s3_bucket), limits=limits)
    for row in range(40):
        store.add("ns", f"stream{row % 4}", row, {"v": "z" * 100}, INVALID)

    uploaded = s3_server.keys_in(s3_bucket)
    assert uploaded  # the buffer's limit forced uploads, no flush yet
    assert store.peak_held_bytes <= limits.buffer_bytes + 200
    store.flush()
    assert sorted(line["row"] for line in all_lines(s3_server, s3_bucket)) == list(range(40))


def test_the_memory_held_stays_within_the_buffer_limit(s3_server, s3_bucket):
    """Measured by the allocator, not by the store's own count: what the lines really occupy
    (orjson's output for a short line takes 4 KiB until freed)."""
    limits = BufferLimits(part_bytes=256 * 1024, buffer_bytes=1024 * 1024)
    store = store_for(storage_for(s3_server, s3_bucket), limits=limits)
    record = {"email": "someone@example.com", "note": "n" * 150}
    tracemalloc.start()
    try:
        for row in range(20_000):  # about 5 MiB of lines, five times the buffer
            store.add("ns", f"stream{row % 5}", row, record, INVALID)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    store.flush()

    assert store.stored == 20_000 and store.objects >= 20
    assert peak < 3 * limits.buffer_bytes  # the buffer, a part's copy, botocore's request


def test_gzip_objects_end_in_jsonl_gz_and_hold_the_same_lines(s3_server, s3_bucket):
    store = store_for(storage_for(s3_server, s3_bucket, gzip=True))
    store.add("ns", "users", 1, {"name": "Zoë"}, INVALID)
    store.add("ns", "users", 2, {"name": "Ådne"}, INVALID)
    store.flush()

    ((key, body),) = s3_server.objects(s3_bucket).items()
    assert key == f"airbyte/rejected/4711/ns/users/{FILE_STEM}_0.jsonl.gz"
    assert [line["data"]["name"] for line in lines_of(gzip.decompress(body))] == ["Zoë", "Ådne"]


def test_flush_makes_every_record_added_so_far_durable_and_then_starts_new_parts(
    s3_server, s3_bucket
):
    store = store_for(storage_for(s3_server, s3_bucket))
    for row in range(5):
        store.add("ns", "users", row, {"row": row}, INVALID)
    assert s3_server.keys_in(s3_bucket) == []  # buffered: nothing written yet

    store.flush()
    assert [line["row"] for line in all_lines(s3_server, s3_bucket)] == list(range(5))
    store.flush()  # nothing new: no new object
    assert len(s3_server.keys_in(s3_bucket)) == 1

    store.add("ns", "users", 5, {"row": 5}, INVALID)
    store.flush()
    assert s3_server.keys_in(s3_bucket)[-1].endswith(f"{FILE_STEM}_1.jsonl")
    assert store.stored == store.added == 6


def test_adds_from_many_threads_are_each_stored_exactly_once(s3_server, s3_bucket):
    limits = BufferLimits(part_bytes=2_000, buffer_bytes=6_000)
    store = store_for(storage_for(s3_server, s3_bucket), limits=limits)
    threads, per_thread = 8, 150
    start = threading.Barrier(threads)

    def adder(worker: int) -> None:
        start.wait()
        for index in range(per_thread):
            row = worker * per_thread + index
            store.add("ns", f"stream{row % 3}", row, {"worker": worker, "pad": "p" * 40}, REFUSED)

    workers = [threading.Thread(target=adder, args=(worker,)) for worker in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    store.flush()

    lines = all_lines(s3_server, s3_bucket)
    assert sorted(line["row"] for line in lines) == list(range(threads * per_thread))
    assert all(line["stream"] == f"stream{line['row'] % 3}" for line in lines)
    for stream in ("stream0", "stream1", "stream2"):
        numbers = sorted(
            int(key.rsplit("_", 1)[1].removesuffix(".jsonl"))
            for key in s3_server.keys_in(s3_bucket)
            if f"/{stream}/" in key
        )
        assert numbers == list(range(len(numbers)))
    assert store.stored == store.added == threads * per_thread
    longest_line = max(len(json.dumps(line)) for line in lines)
    assert store.peak_held_bytes <= limits.buffer_bytes + threads * longest_line


# --- Hostile contents and names --------------------------------------------------------------

json_values = any_json(max_leaves=20)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    record=st.dictionaries(st.text(max_size=8), json_values, max_size=5), row=st.integers(1, 2**40)
)
def test_any_record_reads_back_exactly(s3_server, s3_bucket, record, row):
    run = uuid.uuid4().hex
    store = store_for(storage_for(s3_server, s3_bucket), sync_id=run)
    store.add("ns", "users", row, record, INVALID)
    store.flush()

    ((key, body),) = s3_server.objects(s3_bucket, prefix=f"airbyte/rejected/{run}/").items()
    assert lines_of(body) == [
        {"stream": "users", "namespace": "ns", "row": row, "reason": INVALID, "data": record}
    ]


names = st.text(max_size=80) | st.sampled_from(
    ["", ".", "..", "a/b", "../x", "~no_namespace", "%2F"]
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(namespace=st.none() | names, stream=names)
def test_any_stream_and_namespace_name_gets_its_own_folder_under_the_sync(
    s3_server, s3_bucket, namespace, stream
):
    run = uuid.uuid4().hex
    store = store_for(storage_for(s3_server, s3_bucket), sync_id=run)
    store.add(namespace, stream, 1, {"x": 1}, INVALID)
    store.add("other", "other", 2, {"x": 2}, INVALID)
    store.flush()

    objects = s3_server.objects(s3_bucket, prefix=f"airbyte/rejected/{run}/")
    folder = f"airbyte/rejected/{run}/{key_segment(namespace)}/{key_segment(stream)}/"
    ((key, body),) = [(key, body) for key, body in objects.items() if key.startswith(folder)]
    assert key == f"{folder}{FILE_STEM}_0.jsonl"
    assert [(line["namespace"], line["stream"]) for line in lines_of(body)] == [(namespace, stream)]
    assert len(objects) == (1 if (namespace, stream) == ("other", "other") else 2)


def test_records_orjson_cannot_write_read_back_exactly(s3_server, s3_bucket):
    deep: object = "leaf"
    for _ in range(300):  # 600 levels: deeper than orjson's 254, within what json reads
        deep = {"k": [deep]}
    record = {"id": 2**100, "deep": deep, "lone": "\ud83d", "text": "Zoë \u2028 ✓"}
    store = store_for(storage_for(s3_server, s3_bucket))
    store.add("ns", "users", 1, record, INVALID)
    store.flush()
    assert [line["data"] for line in all_lines(s3_server, s3_bucket)] == [record]


def test_a_role_arn_is_assumed_and_its_temporary_credentials_sign_the_writes(s3_server, s3_bucket):
    with S3FaultProxy(s3_server.url) as proxy:
        role = "arn:aws:iam::123456789012:role/rejected-records"
        store = store_for(storage_for(proxy, s3_bucket, role_arn=role))
        store.add("ns", "users", 1, {"v": 1}, INVALID)
        store.flush()

    (assume,) = [i for i, (method, _) in enumerate(proxy.requests) if method == "POST"]
    (put,) = [i for i, (method, _) in enumerate(proxy.requests) if method == "PUT"]
    assert assume < put
    assert f"Credential={ANY_KEY['aws_access_key_id']}/" in proxy.headers[assume]["authorization"]
    assert f"Credential={ANY_KEY['aws_access_key_id']}/" not in proxy.headers[put]["authorization"]
    assert "x-amz-security-token" in proxy.headers[put]
    assert len(s3_server.keys_in(s3_bucket)) == 1


# --- Failures ----------------------------------------------------------------------------------


def test_transient_failures_are_retried_on_the_sync_clock(s3_server, s3_bucket):
    with S3FaultProxy(s3_server.url) as proxy:
        clock = FakeClock()
        store = store_for(storage_for(proxy, s3_bucket), clock=clock)
        store.add("ns", "users", 1, {"v": MARK}, INVALID)
        proxy.fail_next(2)  # 503 SlowDown
        proxy.fail_next(1, status=500, code="InternalError")
        proxy.drop_next(1)
        store.flush()

    assert len(clock.sleeps) == 4
    assert [line["data"] for line in all_lines(s3_server, s3_bucket)] == [{"v": MARK}]
    assert [method for method, _ in proxy.requests] == ["PUT"] * 5


def test_failures_that_outlast_the_retry_budget_fail_with_the_field_and_keep_failing(
    s3_server, s3_bucket
):
    with S3FaultProxy(s3_server.url) as proxy:
        store = store_for(storage_for(proxy, s3_bucket), policy=RetryPolicy(max_retry_seconds=30))
        store.add("ns", "users", 1, {"v": MARK}, INVALID)
        proxy.fail_next(1000)
        with pytest.raises(ObjectStorageError) as raised:
            store.flush()
        message = str(raised.value)
        assert "'object_storage_config'" in message and "HTTP 503 SlowDown" in message
        assert "30 s of retries" in message
        with pytest.raises(ObjectStorageError):
            store.add("ns", "users", 2, {}, INVALID)
        with pytest.raises(ObjectStorageError):
            store.flush()
    assert s3_server.keys_in(s3_bucket) == []


def test_a_cancelled_sync_stops_retrying_at_once(s3_server, s3_bucket):
    with S3FaultProxy(s3_server.url) as proxy:
        clock = FakeClock(keep_going=False)  # the sync is cancelled during the first wait
        store = store_for(storage_for(proxy, s3_bucket), clock=clock)
        store.add("ns", "users", 1, {"v": 1}, INVALID)
        proxy.fail_next(1)
        with pytest.raises(Cancelled):
            store.flush()
    assert len(clock.sleeps) == 1 and len(proxy.requests) == 1


def test_a_bucket_gone_mid_sync_fails_at_once_naming_the_bucket_field(s3_server, s3_bucket):
    clock = FakeClock()
    store = store_for(storage_for(s3_server, s3_bucket), clock=clock)
    store.add("ns", "users", 1, {"v": MARK}, INVALID)
    s3_server.client().delete_bucket(Bucket=s3_bucket)

    with pytest.raises(ObjectStorageError) as raised:
        store.flush()

    assert raised.value.field == "object_storage_config.s3_bucket_name"
    assert "the bucket does not exist" in str(raised.value)
    assert s3_bucket not in str(raised.value) and MARK not in str(raised.value)
    assert clock.sleeps == []  # permanent: not retried


def test_a_server_that_echoes_values_in_its_error_reaches_no_message(s3_server, s3_bucket):
    with S3FaultProxy(s3_server.url) as proxy:
        store = store_for(storage_for(proxy, s3_bucket))
        store.add("ns", "users", 1, {"v": MARK}, INVALID)
        proxy.fail_next(1, status=400, code=MARK, message=f"body was {{'v': '{MARK}'}}")
        with pytest.raises(ObjectStorageError) as raised:
            store.flush()

    assert MARK not in str(raised.value)
    assert "the store refused the request (HTTP 400)" in str(raised.value)


@pytest.fixture(scope="module")
def auth_server():
    """moto checking signatures and IAM policies: `admin` may do everything, `denied` nothing."""
    with S3Server(enforce_auth=True) as server:
        yield server


@pytest.fixture
def auth_bucket(auth_server) -> str:
    name = f"auth-{uuid.uuid4().hex[:16]}"
    auth_server.create_bucket(name)
    return name


def test_writes_denied_by_policy_fail_naming_the_credentials(auth_server, auth_bucket):
    store = store_for(storage_for(auth_server, auth_bucket, keys=auth_server.keys["denied"]))
    with pytest.raises(ObjectStorageError) as raised:
        store.add("ns", "users", 1, {"v": MARK}, INVALID)
        store.flush()
    assert raised.value.field == "object_storage_config.access_key_id"
    assert "access denied (HTTP 403 AccessDenied)" in str(raised.value)


def test_the_admin_key_of_the_auth_server_writes(auth_server, auth_bucket):
    """The denial above is the policy's, not the server's: the same server takes the admin's."""
    store = store_for(storage_for(auth_server, auth_bucket, keys=auth_server.keys["admin"]))
    store.add("ns", "users", 1, {"v": 1}, INVALID)
    store.flush()
    assert len(auth_server.keys_in(auth_bucket)) == 1


# --- check ---------------------------------------------------------------------------------------


def test_check_writes_lists_and_deletes_its_test_object(s3_server, s3_bucket):
    with S3FaultProxy(s3_server.url) as proxy:
        assert check_object_storage(storage_for(proxy, s3_bucket)) is None
    assert s3_server.keys_in(s3_bucket) == []
    methods = [(method, path.split("?")[0]) for method, path in proxy.requests]
    test_object = methods[0][1]
    assert test_object.startswith(f"/{s3_bucket}/airbyte/rejected/_airbyte_connection_check_")
    assert methods == [
        ("PUT", test_object),
        ("GET", f"/{s3_bucket}"),
        ("DELETE", test_object),
        ("HEAD", f"/{s3_bucket}"),
    ]


def test_check_without_a_region_skips_the_region_step(s3_server, s3_bucket):
    assert check_object_storage(storage_for(s3_server, s3_bucket, region=None)) is None


def unreachable_endpoint() -> str:
    import socket

    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.parametrize(
    "case, field, words",
    [
        ("no such bucket", "s3_bucket_name", "the bucket does not exist"),
        ("wrong region", "s3_bucket_region", "the bucket is in another region (eu-west-1)"),
        ("unreachable endpoint", "s3_endpoint", "failed or timed out"),
        ("denied", "access_key_id", "access denied (HTTP 403"),
        (
            "unknown key",
            "access_key_id",
            "the credentials were refused (HTTP 403 InvalidAccessKeyId)",
        ),
    ],
)
def test_check_fails_naming_the_field_to_fix(s3_server, auth_server, case, field, words):
    bucket = f"check-{uuid.uuid4().hex[:16]}"
    if case == "no such bucket":
        storage = storage_for(s3_server, bucket)
    elif case == "wrong region":
        s3_server.create_bucket(bucket, region="eu-west-1")
        storage = storage_for(s3_server, bucket)
    elif case == "unreachable endpoint":
        storage = storage_for(s3_server, bucket, endpoint=unreachable_endpoint())
    elif case == "denied":
        auth_server.create_bucket(bucket)
        storage = storage_for(auth_server, bucket, keys=auth_server.keys["denied"])
    else:
        auth_server.create_bucket(bucket)
        storage = storage_for(auth_server, bucket, keys=ANY_KEY)

    message = check_object_storage(storage, clock=FakeClock(), retry_seconds=5)

    assert message is not None
    assert f"'object_storage_config.{field}'" in message and words in message
    for value in (bucket, storage.access_key_id, storage.secret_access_key, str(storage.endpoint)):
        assert value not in message
