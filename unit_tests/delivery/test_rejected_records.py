"""The rules of rejected_records.py that hold over values: keys, lines, the meaning of failures.

The store itself is tested against a real S3-protocol server in
integration_tests/test_rejected_records.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import botocore.exceptions
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_heap_analytics.config.settings import MAX_BUCKET_PATH_BYTES
from destination_heap_analytics.delivery.rejected_records import (
    EMPTY_NAME,
    MAX_SEGMENT_BYTES,
    NO_NAMESPACE,
    ObjectStorageError,
    StorageTransientError,
    encode_line,
    exact_json,
    file_name,
    key_segment,
    run_folder,
    storage_failure,
)
from unit_tests.strategies import json_values as any_json

S3_MAX_KEY_BYTES = 1024
names = st.text(max_size=300) | st.sampled_from(["", ".", "..", "a/b", "%2F", "~empty", "~x"])


def key_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


@given(names)
def test_a_folder_name_is_safe_for_any_name(name):
    segment = key_segment(name)
    assert segment and "/" not in segment and segment not in (".", "..")
    assert key_bytes(segment) <= MAX_SEGMENT_BYTES  # encodable as UTF-8, and short
    assert all(character.isprintable() and not character.isspace() for character in segment)


@settings(max_examples=500)
@given(st.none() | names, st.none() | names)
def test_distinct_names_get_distinct_folders(first, second):
    if first != second:
        assert key_segment(first) != key_segment(second)


@pytest.mark.parametrize(
    "name, segment",
    [
        ("users", "users"),
        ("public_2024.v1-x", "public_2024.v1-x"),
        ("ユーザー", "ユーザー"),
        ("a/b", "a%2Fb"),
        ("50% off", "50%25%20off"),
        ("~no_namespace", "%7Eno_namespace"),
        ("..", "%2E%2E"),
        ("", EMPTY_NAME),
        (None, NO_NAMESPACE),
        ("\ud800", "%ED%A0%80"),
    ],
)
def test_folder_names_keep_readable_names_and_encode_the_rest(name, segment):
    assert key_segment(name) == segment


def test_a_long_name_is_cut_and_ends_in_a_hash_of_the_whole_name():
    first, second = "x" * 400 + "a", "x" * 400 + "b"
    assert key_segment(first) != key_segment(second)
    assert key_segment(first).startswith("x" * 100) and "~" in key_segment(first)
    assert key_bytes(key_segment(first)) <= MAX_SEGMENT_BYTES


@given(st.none() | names, names, st.none() | st.integers(0, 10**30) | names)
def test_every_key_fits_s3s_limit_with_the_longest_bucket_path(namespace, stream, sync_id):
    started = datetime(2026, 11, 27, tzinfo=UTC)
    bucket_path = "p" * MAX_BUCKET_PATH_BYTES
    key = "/".join(
        [
            bucket_path,
            run_folder(sync_id, started),
            key_segment(namespace),
            key_segment(stream),
            file_name(started, 10**9, gzipped=True),
        ]
    )
    assert key_bytes(key) <= S3_MAX_KEY_BYTES


def test_file_names_follow_airbytes_default_format():
    started = datetime(2026, 11, 27, 9, 30, 5, 42_000, tzinfo=UTC)
    assert file_name(started, 0, gzipped=False) == "2026-11-27_2026-11-27T09:30:05.042Z_0.jsonl"
    assert file_name(started, 12, gzipped=True) == "2026-11-27_2026-11-27T09:30:05.042Z_12.jsonl.gz"


def test_the_sync_folder_is_the_sync_id_else_a_run_id_of_the_start():
    started = datetime(2026, 11, 27, 9, 30, 5, tzinfo=UTC)
    assert run_folder(4711, started) == "4711"
    assert run_folder(None, started) == run_folder("", started) == "run-20261127T093005Z"


# --- Lines ---------------------------------------------------------------------------------------

json_values = any_json(max_leaves=30)


@settings(max_examples=400)
@given(json_values)
def test_exact_json_reads_back_as_the_same_value(value):
    assert json.loads(exact_json(value)) == value


@given(json_values)
def test_exact_json_and_orjson_write_the_same_json_where_orjson_can(value):
    try:
        fast = orjson.dumps(value)
    except TypeError:
        return
    assert json.loads(fast) == json.loads(exact_json(value))


def test_exact_json_writes_any_depth():
    depth = 20_000
    nested: object = 2**70
    for level in range(depth):
        nested = [nested] if level % 2 else {"k": nested}
    text = exact_json(nested)
    assert text.count("[") == text.count("]") == depth // 2
    assert text.count('{"k":') == text.count("}") == depth // 2
    assert str(2**70) in text


def test_exact_json_writes_non_string_keys_as_the_standard_library_does():
    value = {1: "a", None: "b", False: "c", 2.5: "d"}
    assert json.loads(exact_json(value)) == json.loads(json.dumps(value))


@given(json_values, st.none() | st.text(), st.text(), st.integers(1, 2**63))
def test_a_line_holds_the_record_and_where_it_came_from(record, namespace, stream, row):
    reason = {"kind": "invalid", "rule": "identity is missing", "column": "email"}
    line = encode_line(namespace, stream, row, record, reason)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "stream": stream,
        "namespace": namespace,
        "row": row,
        "reason": reason,
        "data": record,
    }


# --- What failures mean --------------------------------------------------------------------------


def client_error(code: str, status: int, operation: str = "PutObject", headers=None):
    response = {
        "Error": {"Code": code, "Message": "Zq9 the server's words"},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
    }
    return botocore.exceptions.ClientError(response, operation)


@pytest.mark.parametrize(
    "error, retry_after",
    [
        (client_error("SlowDown", 503), None),
        (client_error("InternalError", 500), None),
        (client_error("ServiceUnavailable", 503, headers={"retry-after": "7"}), 7.0),
        (client_error("RequestTimeout", 400), None),
        (client_error("Throttling", 400), None),
        (client_error("", 429), None),
        (client_error("", 502), None),
        (client_error("Zq9", 500), None),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://Zq9"), None),
        (botocore.exceptions.ConnectTimeoutError(endpoint_url="http://Zq9"), None),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="http://Zq9"), None),
        (botocore.exceptions.ConnectionClosedError(endpoint_url="http://Zq9"), None),
    ],
)
def test_network_failures_5xx_and_throttling_are_transient(error, retry_after):
    failure = storage_failure(error)
    assert isinstance(failure, StorageTransientError)
    assert failure.retry_after == retry_after
    assert "Zq9" not in str(failure)


@pytest.mark.parametrize(
    "error, field, words",
    [
        (client_error("NoSuchBucket", 404), "s3_bucket_name", "the bucket does not exist"),
        (client_error("404", 404, "HeadBucket"), "s3_bucket_name", "the bucket does not exist"),
        (
            client_error("AccessDenied", 403),
            "access_key_id",
            "access denied (HTTP 403 AccessDenied)",
        ),
        (client_error("403", 403, "HeadBucket"), "access_key_id", "access denied (HTTP 403)"),
        (
            client_error("InvalidAccessKeyId", 403),
            "access_key_id",
            "the credentials were refused (HTTP 403 InvalidAccessKeyId)",
        ),
        (client_error("SignatureDoesNotMatch", 403), "access_key_id", "credentials were refused"),
        (client_error("ExpiredToken", 400), "access_key_id", "credentials were refused"),
        (client_error("PermanentRedirect", 301), "s3_bucket_region", "in another region"),
        (client_error("AuthorizationHeaderMalformed", 400), "s3_bucket_region", "another region"),
        (client_error("", 301), "s3_bucket_region", "in another region (HTTP 301)"),
        (client_error("AccessDenied", 403, "AssumeRole"), "access_key_id", "role could not be"),
        (client_error("Zq9", 400), None, "the store refused the request (HTTP 400)"),
        (
            client_error("InvalidArgument", 400),
            None,
            "refused the request (HTTP 400 InvalidArgument)",
        ),
        (client_error("Zq9", 404), "s3_bucket_name", "not found (HTTP 404)"),
        (
            botocore.exceptions.SSLError(endpoint_url="https://Zq9", error="Zq9"),
            "s3_endpoint",
            "TLS",
        ),
        (botocore.exceptions.NoCredentialsError(), "access_key_id", "no usable credentials"),
        (
            botocore.exceptions.ParamValidationError(report="Zq9 is not a bucket"),
            "s3_bucket_name",
            "refused the bucket name",
        ),
        (botocore.exceptions.NoRegionError(), "s3_bucket_region", "no region"),
    ],
)
def test_other_failures_are_permanent_and_name_the_field(error, field, words):
    failure = storage_failure(error)
    assert not isinstance(failure, StorageTransientError) and failure is not None
    raised = ObjectStorageError("write rejected records to", failure.problem, failure.fields)
    message = str(raised)
    assert message.startswith(
        "Could not write rejected records to the bucket set in 'object_storage_config': "
    )
    assert words in message and "Zq9" not in message
    assert raised.field == (f"object_storage_config.{field}" if field else "object_storage_config")


def test_an_assumed_role_that_fails_for_a_while_is_retried():
    failure = storage_failure(client_error("ServiceUnavailable", 503, "AssumeRole"))
    assert isinstance(failure, StorageTransientError) and failure.fields == ("role_arn",)


def test_anything_that_is_not_a_storage_failure_is_left_alone():
    assert storage_failure(KeyError("a bug")) is None
