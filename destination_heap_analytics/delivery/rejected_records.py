"""Rejected records, written to the user's S3 bucket (Airbyte's rejected-records storage).

A record that does not reach Heap for a reason in its data (invalid, or refused by Heap) is
written, with its stream, namespace, row number and reason, as one JSON line of an object in the
bucket configured in `object_storage_config`, under Airbyte's default layout
`<bucket_path>/<sync_id>/<namespace>/<stream_name>/<date>_<timestamp>_<part_number>.jsonl[.gz]`.
The platform links a job's "N records rejected" to `s3://<bucket>/<bucket_path>/<sync_id>/`.

The bucket is the user's own storage, so the values go there; they never reach a log line or an
exception message. Nothing the store raises quotes botocore's text (which names buckets, keys and
regions) or the server's (which may echo a body): failures are described in fixed words.

Lines are buffered in bounded memory, per stream in parts of bounded size; a part is uploaded as
one object (a single PUT, so an object is either complete in the bucket or absent) when it is
full, when the buffer is full, and on `flush`, which the sync calls before it emits a state.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import Any, TypeVar

import boto3
import botocore.exceptions
import orjson
from botocore.config import Config
from botocore.credentials import DeferredRefreshableCredentials
from botocore.session import get_session

from destination_heap_analytics.config.schema import connection_specification
from destination_heap_analytics.config.settings import OBJECT_STORAGE_FIELD, S3Storage
from destination_heap_analytics.delivery.retry import (
    RetriesExhausted,
    RetryPolicy,
    call_with_retries,
)
from destination_heap_analytics.heap.client import (
    CHECK_RETRY_SECONDS,
    CHECK_TIMEOUTS,
    CONNECT_TIMEOUT_SECONDS,
    READ_TIMEOUT_SECONDS,
    USER_AGENT,
    HeapTransientError,
)
from destination_heap_analytics.sync_clock import Clock, SyncClock

T = TypeVar("T")

FILE_EXTENSION = ".jsonl"
GZIP_EXTENSION = ".gz"
NO_NAMESPACE = "~no_namespace"
"""The namespace folder of a stream without a namespace. Names never produce a raw `~` (it is
percent-encoded), so no real namespace can land in this folder."""
EMPTY_NAME = "~empty"
"""The folder of an empty namespace or stream name, which S3 cannot hold as a key part."""
MAX_SEGMENT_BYTES = 150
"""A sync id, namespace or stream folder longer than this is cut and ends in `~` and a hash of
the full name; with `bucket_path` capped at 500 bytes, every key fits S3's 1,024."""

DEFAULT_PART_BYTES = 8 * 1024 * 1024
"""Uncompressed bytes of lines in one object, at most (a single line longer than this is an
object of its own)."""
DEFAULT_BUFFER_BYTES = 16 * 1024 * 1024
"""Bytes of lines held in memory at most, for all streams, uploads under way included."""

MAX_POOL_CONNECTIONS = 20
"""More than the sending threads (at most 16) and the main thread together."""
ROLE_SESSION_NAME = "airbyte-destination-heap-analytics"
EXTERNAL_ID_ENV = "AWS_ASSUME_ROLE_EXTERNAL_ID"
"""Where Airbyte Cloud, like its own connectors, passes the External ID of an assumed role."""
BUCKET_REGION_HEADER = "x-amz-bucket-region"
CHECK_BODY = b"airbyte destination-heap-analytics connection check\n"

_KEY_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!*'()")
"""AWS's safe key characters; other ASCII characters are percent-encoded in folder names."""


@dataclass(frozen=True)
class BufferLimits:
    part_bytes: int = DEFAULT_PART_BYTES
    buffer_bytes: int = DEFAULT_BUFFER_BYTES


class ObjectStorageError(Exception):
    """The bucket cannot take the rejected records (or `check`'s test object); the sync must fail
    with a config_error. The message names `object_storage_config` and the field to check and
    never holds a value: no bucket name, key, credential or record."""

    def __init__(self, action: str, problem: str, fields: tuple[str, ...]) -> None:
        names = " and ".join(f"'{OBJECT_STORAGE_FIELD}.{name}'" for name in fields)
        where = f"check {names}" if fields else f"check '{OBJECT_STORAGE_FIELD}'"
        super().__init__(
            f"Could not {action} the bucket set in '{OBJECT_STORAGE_FIELD}': {problem}; {where}"
        )
        self.field = f"{OBJECT_STORAGE_FIELD}.{fields[0]}" if fields else OBJECT_STORAGE_FIELD
        self.problem = problem
        self._details = (action, problem, fields)

    def again(self) -> ObjectStorageError:
        """The same error as a new exception, to raise in another thread or a later call."""
        return ObjectStorageError(*self._details)


class StorageTransientError(HeapTransientError):
    """A failure worth retrying (network, 5xx, throttling), for retry.py's loop; `fields` are
    the settings to check if it never ends (an endpoint that never answers)."""

    def __init__(self, problem: str, fields: tuple[str, ...], retry_after: float | None) -> None:
        super().__init__(problem, retry_after)
        self.problem = problem
        self.fields = fields


class _StoragePermanentError(Exception):
    """A failure that the same request will meet again; becomes an ObjectStorageError."""

    def __init__(self, problem: str, fields: tuple[str, ...]) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fields = fields


# --- What a failure means, in words that quote neither botocore nor the server -----------------

CREDENTIAL_FIELDS = ("access_key_id", "secret_access_key", "role_arn")
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "TemporaryRedirect",
        "OperationAborted",
    }
)
NO_BUCKET_CODES = frozenset({"NoSuchBucket"})
CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "AuthFailure",
    }
)
DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem"})
REGION_CODES = frozenset(
    {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
)
OTHER_KNOWN_CODES = frozenset(
    {
        "InvalidBucketName",
        "InvalidArgument",
        "InvalidRequest",
        "InvalidDigest",
        "BadDigest",
        "EntityTooLarge",
        "KeyTooLongError",
        "MethodNotAllowed",
        "NotImplemented",
        "MissingContentLength",
        "XAmzContentSHA256Mismatch",
        "InvalidStorageClass",
        "QuotaExceeded",
    }
)
KNOWN_CODES = (
    TRANSIENT_CODES
    | NO_BUCKET_CODES
    | CREDENTIAL_CODES
    | DENIED_CODES
    | REGION_CODES
    | OTHER_KNOWN_CODES
)
"""S3's documented error codes: the only text of an answer that a message may repeat."""


def storage_failure(error: Exception) -> StorageTransientError | _StoragePermanentError | None:
    """What a botocore exception means for the store: worth retrying, permanent, or (None) not
    a storage failure at all (a bug, which must surface as it is)."""
    if isinstance(error, botocore.exceptions.ClientError):
        return _answer_failure(error)
    if isinstance(error, botocore.exceptions.SSLError):
        return _StoragePermanentError("the TLS connection to the store failed", ("s3_endpoint",))
    if isinstance(
        error, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError
    ):  # refused, reset, timed out (TLS failures were taken out above)
        return StorageTransientError(
            "the connection to the store failed or timed out", ("s3_endpoint",), None
        )
    if isinstance(
        error,
        botocore.exceptions.NoCredentialsError
        | botocore.exceptions.PartialCredentialsError
        | botocore.exceptions.CredentialRetrievalError,
    ):
        return _StoragePermanentError("no usable credentials were found", CREDENTIAL_FIELDS)
    if isinstance(error, botocore.exceptions.ParamValidationError):
        return _StoragePermanentError("the AWS SDK refused the bucket name", ("s3_bucket_name",))
    if isinstance(error, botocore.exceptions.NoRegionError):
        return _StoragePermanentError("no region is set", ("s3_bucket_region",))
    if isinstance(error, botocore.exceptions.BotoCoreError):
        return _StoragePermanentError(f"the AWS SDK failed ({type(error).__name__})", ())
    return None


def _answer_failure(
    error: botocore.exceptions.ClientError,
) -> StorageTransientError | _StoragePermanentError:
    response = error.response
    code = str(response.get("Error", {}).get("Code", ""))
    metadata = response.get("ResponseMetadata", {})
    status = int(metadata.get("HTTPStatusCode") or 0)
    shown = f"HTTP {status} {code}" if code in KNOWN_CODES else f"HTTP {status}"
    if error.operation_name == "AssumeRole":
        if status >= 500 or status == 429 or code in TRANSIENT_CODES:
            return StorageTransientError(f"assuming the role failed ({shown})", ("role_arn",), None)
        return _StoragePermanentError(f"the role could not be assumed ({shown})", CREDENTIAL_FIELDS)
    if code in TRANSIENT_CODES or status >= 500 or status in (408, 429):
        retry_after = _retry_after(metadata.get("HTTPHeaders", {}))
        return StorageTransientError(f"the store is unavailable ({shown})", (), retry_after)
    if code in NO_BUCKET_CODES or (status == 404 and error.operation_name == "HeadBucket"):
        return _StoragePermanentError("the bucket does not exist", ("s3_bucket_name",))
    if code in CREDENTIAL_CODES:
        return _StoragePermanentError(f"the credentials were refused ({shown})", CREDENTIAL_FIELDS)
    if code in DENIED_CODES or status == 403:
        return _StoragePermanentError(
            f"access denied ({shown}): the credentials need s3:PutObject, s3:ListBucket and "
            "s3:DeleteObject under the prefix path",
            CREDENTIAL_FIELDS,
        )
    if code in REGION_CODES or status == 301:
        return _StoragePermanentError(
            f"the bucket is in another region ({shown})", ("s3_bucket_region",)
        )
    if status == 404:
        return _StoragePermanentError(f"not found ({shown})", ("s3_bucket_name", "s3_endpoint"))
    return _StoragePermanentError(f"the store refused the request ({shown})", ())


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        seconds = float(headers.get("retry-after", ""))
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 3600 else None


def _attempt(operation: Callable[[], T]) -> T:
    """One S3 call, its botocore failure turned into the store's own kinds."""
    try:
        return operation()
    except Exception as error:
        failure = storage_failure(error)
        if failure is None:
            raise
        raise failure from None


def _with_retries(action: str, operation: Callable[[], T], policy: RetryPolicy, clock: Clock) -> T:
    """Retry transient failures (retry.py's backoff, on the sync's clock); any other failure,
    or one that outlasts the budget, is an ObjectStorageError. `retry.Cancelled` passes."""
    try:
        return call_with_retries(lambda: _attempt(operation), policy, clock)
    except _StoragePermanentError as error:
        raise ObjectStorageError(action, error.problem, error.fields) from None
    except RetriesExhausted as exhausted:
        last = exhausted.last_error
        assert isinstance(last, StorageTransientError)
        problem = last.problem
        if policy.max_retry_seconds > 0:
            problem += f", still after {policy.max_retry_seconds:.0f} s of retries"
        raise ObjectStorageError(action, problem, last.fields) from None


# --- The S3 client ------------------------------------------------------------------------------


def s3_client(
    storage: S3Storage,
    timeouts: tuple[float, float] = (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
) -> Any:
    """A boto3 S3 client for `storage` that never retries on its own (retry.py owns retries,
    so a cancelled sync stops waiting at once and the budget is `max_retry_seconds`).

    With an endpoint (MinIO, R2, ...), requests use path-style addressing, which every
    S3-compatible store accepts. Checksums are sent only where S3 requires them and Content-MD5
    is sent with every object, which every store verifies (botocore's newer default checksums
    are refused by some S3-compatible stores).
    """
    config = Config(
        connect_timeout=timeouts[0],
        read_timeout=timeouts[1],
        retries={"total_max_attempts": 1},
        max_pool_connections=MAX_POOL_CONNECTIONS,
        s3={"addressing_style": "path"} if storage.endpoint else {},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        user_agent_extra=USER_AGENT,
    )
    session = _session(storage, config)
    return session.client("s3", endpoint_url=storage.endpoint, config=config)


def _session(storage: S3Storage, config: Config) -> boto3.Session:
    """Credentials: the access key when set, else the environment's chain (AWS_* variables, an
    instance profile); with a role ARN, those credentials assume the role, refreshed before
    they expire (a sync may outlast one session)."""
    base = boto3.Session(
        aws_access_key_id=storage.access_key_id,
        aws_secret_access_key=storage.secret_access_key,
        region_name=storage.region,
    )
    if storage.role_arn is None:
        return base
    sts = base.client("sts", endpoint_url=storage.endpoint, config=config)
    role_arn = storage.role_arn

    def assume_role() -> dict[str, str]:
        arguments = {"RoleArn": role_arn, "RoleSessionName": ROLE_SESSION_NAME}
        if os.environ.get(EXTERNAL_ID_ENV):
            arguments["ExternalId"] = os.environ[EXTERNAL_ID_ENV]
        credentials = sts.assume_role(**arguments)["Credentials"]
        return {
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"],
            "expiry_time": credentials["Expiration"].isoformat(),
        }

    botocore_session = get_session()
    # botocore has no public setter for refreshable credentials; this is how boto3 users
    # plug in their own (the credentials are fetched at the first request, not here).
    botocore_session._credentials = DeferredRefreshableCredentials(
        refresh_using=assume_role, method="sts-assume-role"
    )
    return boto3.Session(botocore_session=botocore_session, region_name=storage.region)


# --- Keys ---------------------------------------------------------------------------------------


def key_segment(name: str | None) -> str:
    """One folder of a key: any name, made safe and kept distinct from every other name.

    Letters, digits, AWS's safe punctuation and printable non-ASCII characters stay as they
    are; `/`, `%`, `~`, spaces, control characters and other ASCII punctuation are
    percent-encoded (UTF-8), and `.` / `..` are encoded whole, so a name is never a path of its
    own. A long name is cut and given a hash of the full name.
    """
    if name is None:
        return NO_NAMESPACE
    if name == "":
        return EMPTY_NAME
    if name in (".", ".."):
        return "%2E" * len(name)
    pieces = [_key_piece(character) for character in name]
    encoded = "".join(pieces)
    if len(encoded.encode("utf-8")) <= MAX_SEGMENT_BYTES:
        return encoded
    return _shortened(pieces, name)


def _key_piece(character: str) -> str:
    if character in _KEY_SAFE:
        return character
    if ord(character) > 127 and character.isprintable() and not character.isspace():
        return character
    return "".join(f"%{byte:02X}" for byte in character.encode("utf-8", "surrogatepass"))


def _shortened(pieces: list[str], name: str) -> str:
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    budget = MAX_SEGMENT_BYTES - len(digest) - 1
    kept: list[str] = []
    for piece in pieces:
        budget -= len(piece.encode("utf-8"))
        if budget < 0:
            break
        kept.append(piece)
    return "".join(kept) + "~" + digest


def run_folder(sync_id: int | str | None, started_at: datetime) -> str:
    """The sync's folder: the catalog's sync_id (the job id the platform links to), else a run id
    from the start time in UTC, for syncs outside the platform (CLI, PyAirbyte)."""
    if sync_id is None or sync_id == "":
        return f"run-{started_at.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    return key_segment(str(sync_id))


def file_name(started_at: datetime, part_number: int, gzipped: bool) -> str:
    """Airbyte's default `{date}_{timestamp}_{part_number}{format_extension}`, with its date
    (`2026-11-27`) and timestamp (`2026-11-27T09:30:00.000Z`) forms, of the sync's start."""
    utc = started_at.astimezone(UTC)
    timestamp = f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"
    extension = FILE_EXTENSION + (GZIP_EXTENSION if gzipped else "")
    return f"{utc:%Y-%m-%d}_{timestamp}_{part_number}{extension}"


def _joined(*parts: str) -> str:
    return "/".join(part for part in parts if part)


# --- Lines --------------------------------------------------------------------------------------


def invalid_reason(reason: str, column: str | None, rule: str) -> dict[str, str | None]:
    """The `reason` of a record the connector found invalid: the reason as the sync log words
    it (`email is missing or null`), and apart, the column (None for a rule about the whole
    record) and the rule it broke (`is missing or null`)."""
    return {"kind": "invalid", "reason": reason, "column": column, "rule": rule}


def refused_reason(status: int, message: str) -> dict[str, Any]:
    """The `reason` of a record Heap refused: its status and its message, as the log shows it
    (`privacy.sanitise`'s words: Heap's own text is never copied, not even here)."""
    return {"kind": "refused", "status": status, "message": message}


def encode_line(
    namespace: str | None,
    stream: str,
    row: int,
    record: Any,
    reason: Mapping[str, Any],
) -> bytes:
    """One JSON line: `{"stream", "namespace", "row", "reason", "data"}`.

    orjson writes the common case; a record it cannot write exactly (integers beyond 64 bits,
    nesting deeper than 254, a lone surrogate, keys that are not strings) is written by
    `exact_json`, so every value reads back as it was.
    """
    line = {"stream": stream, "namespace": namespace, "row": row, "reason": reason, "data": record}
    try:
        return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return exact_json(line).encode("ascii") + b"\n"


class _Raw(str):
    """Text `exact_json` writes as it is (brackets, separators, keys)."""


def exact_json(value: Any) -> str:
    """JSON text of any value, exact and at any depth (iterative, so no recursion limit): big
    integers in full, floats as repr (shortest round trip), strings ASCII-escaped (a lone
    surrogate becomes its `\\uXXXX` escape). Keys that are not strings become strings as the
    standard library does; a value that is not JSON becomes its text; NaN and infinities,
    which JSON cannot hold, become null."""
    out: list[str] = []
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is _Raw:
            out.append(item)
        elif item is None or item is True or item is False:
            out.append("null" if item is None else "true" if item else "false")
        elif isinstance(item, str):
            out.append(encode_basestring_ascii(item))
        elif isinstance(item, int):
            out.append(int.__repr__(item))
        elif isinstance(item, float):
            out.append(float.__repr__(item) if item - item == 0 else "null")
        elif isinstance(item, Mapping):
            pending.append(_Raw("}"))
            entries = list(item.items())
            for index in range(len(entries) - 1, -1, -1):
                key, child = entries[index]
                pending.append(child)
                separator = "," if index else ""
                pending.append(_Raw(separator + encode_basestring_ascii(_key_text(key)) + ":"))
            out.append("{")
        elif isinstance(item, list | tuple):
            pending.append(_Raw("]"))
            for index in range(len(item) - 1, -1, -1):
                pending.append(item[index])
                if index:
                    pending.append(_Raw(","))
            out.append("[")
        else:
            out.append(encode_basestring_ascii(str(item)))
    return "".join(out)


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or key is True or key is False:
        return "null" if key is None else "true" if key else "false"
    return exact_json(key)


# --- The store ----------------------------------------------------------------------------------


@dataclass
class _Part:
    """The lines of one future object, and, once sealed, its place in the upload order.

    The lines are copied into one bytearray: orjson's output for a short line occupies about
    4 KiB until freed, so a list of them would hold ten times the bytes it counts.
    """

    key: str
    lines: bytearray = field(default_factory=bytearray)
    count: int = 0
    sequence: int = -1

    @property
    def size(self) -> int:
        return len(self.lines)


class RejectedRecords:
    """The rejected records of one sync, written to the user's bucket.

    `add` is thread-safe: the main thread adds invalid records and the sending threads the
    records Heap refused. `flush` returns once every record added before it is in a complete
    object in the bucket. A permanent failure (or transient failures that outlast the retry
    budget) raises ObjectStorageError from `add` or `flush`, and from every later call, so no
    state can be emitted past rows that were not stored.
    """

    def __init__(
        self,
        storage: S3Storage,
        sync_id: int | str | None,
        clock: Clock,
        retry_policy: RetryPolicy,
        *,
        started_at: datetime | None = None,
        limits: BufferLimits = BufferLimits(),
        client: Any = None,
    ) -> None:
        """`sync_id`: the configured catalog's; None for a run id from `started_at` (UTC, now by
        default). `clock` is the sync's (retries wait on it). `client` defaults to `s3_client`."""
        self._storage = storage
        self._clock = clock
        self._policy = retry_policy
        self._started_at = started_at or datetime.now(UTC)
        self._limits = limits
        self._client = client if client is not None else s3_client(storage)
        self._run_prefix = _joined(storage.bucket_path, run_folder(sync_id, self._started_at))
        self._changed = threading.Condition()
        self._open: dict[tuple[str | None, str], _Part] = {}
        self._next_part_number: dict[tuple[str | None, str], int] = {}
        self._held_bytes = 0
        """Bytes of lines in open parts and in uploads under way."""
        self._uploading: dict[int, int] = {}
        """Sequence number → bytes, of the sealed parts being uploaded."""
        self._sealed = 0
        self._failure: ObjectStorageError | None = None
        self.added = 0
        """Records added."""
        self.stored = 0
        """Records in complete objects in the bucket."""
        self.objects = 0
        """Objects written."""
        self.peak_held_bytes = 0
        """The most bytes of lines held in memory at once (open parts and uploads under way)."""

    def prefix(self) -> str:
        """Where this sync's rejected records go, `s3://bucket/bucket_path/sync_id/`, for the
        log (the platform's link points at the same folder)."""
        return f"s3://{self._storage.bucket_name}/{self._run_prefix}/"

    def add(
        self,
        namespace: str | None,
        stream: str,
        row: int,
        record: Any,
        reason: Mapping[str, Any],
    ) -> None:
        """Buffer one rejected record. When the stream's part cannot take the line, or the
        buffer is full, a part is uploaded in the calling thread; while the buffer is full of
        other threads' uploads, the call waits for them.

        `record` is the record's data or, for a record Heap refused, the item as it was sent;
        `reason` a small JSON object such as `{"kind": "invalid", "rule": ..., "column": ...}`
        or `{"kind": "refused", "status": 400, "message": ...}`.
        """
        line = encode_line(namespace, stream, row, record, reason)
        with self._changed:
            while self._uploading and self._held_bytes >= self._limits.buffer_bytes:
                self._raise_if_failed()
                self._changed.wait()
            self._raise_if_failed()
            name = (namespace, stream)
            full = self._full_part(name, len(line))
            part = self._open.get(name) or self._open_part(name)
            part.lines += line
            part.count += 1
            self._held_bytes += len(line)
            self.peak_held_bytes = max(self.peak_held_bytes, self._held_bytes)
            self.added += 1
            if full is None and self._held_bytes > self._limits.buffer_bytes:
                full = self._seal(max(self._open, key=lambda stream: self._open[stream].size))
        if full is not None:
            self._upload(full)

    def flush(self) -> None:
        """Return once every record added so far is in a complete object in the bucket: uploads
        the open parts and waits for the uploads other threads have under way."""
        with self._changed:
            self._raise_if_failed()
            sealed = [self._seal(stream) for stream in list(self._open)]
            last = self._sealed
        for index, part in enumerate(sealed):
            try:
                self._upload(part)
            except BaseException:
                self._release(sealed[index + 1 :])
                raise
        with self._changed:
            while any(sequence <= last for sequence in self._uploading):
                self._changed.wait()
            self._raise_if_failed()

    def close(self) -> None:
        """Release the connections; records not flushed are dropped (no state covers them)."""
        self._client.close()

    def _open_part(self, name: tuple[str | None, str]) -> _Part:
        """A new part of a stream, with the stream's next part number."""
        number = self._next_part_number.get(name, 0)
        self._next_part_number[name] = number + 1
        folder = self._folder(*name)
        part = self._open[name] = _Part(
            f"{folder}/{file_name(self._started_at, number, self._storage.gzip)}"
        )
        return part

    def folder(self, namespace: str | None, stream: str) -> str:
        """Where a stream's rejected records go, `s3://bucket/…/<namespace>/<stream>/`."""
        return f"s3://{self._storage.bucket_name}/{self._folder(namespace, stream)}/"

    def _folder(self, namespace: str | None, stream: str) -> str:
        return _joined(self._run_prefix, key_segment(namespace), key_segment(stream))

    def _full_part(self, name: tuple[str | None, str], line_bytes: int) -> _Part | None:
        """The stream's open part, sealed, when the next line would take it past the part size
        (a line longer than a whole part gets a part of its own); else None."""
        part = self._open.get(name)
        if part is None or part.size == 0 or part.size + line_bytes <= self._limits.part_bytes:
            return None
        return self._seal(name)

    def _seal(self, stream: tuple[str | None, str]) -> _Part:
        part = self._open.pop(stream)
        self._sealed += 1
        part.sequence = self._sealed
        self._uploading[part.sequence] = part.size
        return part

    def _upload(self, part: _Part) -> None:
        """Write one sealed part as one object, retrying transient failures; the buffer space
        it held is released whatever happens, and a storage failure is kept for every later
        call (retry.Cancelled, a stopping sync, passes without being kept)."""
        stored = False
        try:
            body = bytes(part.lines)
            part.lines = bytearray()
            if self._storage.gzip:
                body = gzip.compress(body, mtime=0)
            _with_retries(
                "write rejected records to",
                lambda: self._put(part.key, body),
                self._policy,
                self._clock,
            )
            stored = True
        except ObjectStorageError as error:
            with self._changed:
                self._failure = self._failure or error
            raise
        finally:
            with self._changed:
                self._held_bytes -= self._uploading.pop(part.sequence)
                if stored:
                    self.stored += part.count
                    self.objects += 1
                self._changed.notify_all()

    def _release(self, parts: list[_Part]) -> None:
        """Give back the buffer space of sealed parts that will not be uploaded."""
        with self._changed:
            for part in parts:
                self._held_bytes -= self._uploading.pop(part.sequence)
            self._changed.notify_all()

    def _put(self, key: str, body: bytes) -> None:
        self._client.put_object(
            Bucket=self._storage.bucket_name,
            Key=key,
            Body=body,
            ContentMD5=_content_md5(body),
            ContentType="application/gzip" if self._storage.gzip else "application/jsonl",
        )

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure.again()


def _content_md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode("ascii")


# --- check --------------------------------------------------------------------------------------


def check_object_storage(
    storage: S3Storage,
    clock: Clock | None = None,
    retry_seconds: float = CHECK_RETRY_SECONDS,
    client: Any = None,
) -> str | None:
    """`check` for the bucket, as Airbyte's connectors do it: write, list and delete a small test
    object under the prefix path; then, when a region is set, confirm the bucket is in it (last,
    as HeadBucket's answers have no body to tell a denial from unknown credentials).

    None when every step worked, else a message naming `object_storage_config`, the step and
    the field to check (no value).
    """
    own_client = client is None
    client = s3_client(storage, CHECK_TIMEOUTS) if own_client else client
    clock = clock if clock is not None else SyncClock()
    policy = RetryPolicy(retry_seconds)
    bucket = storage.bucket_name
    key = _joined(storage.bucket_path, f"_airbyte_connection_check_{uuid.uuid4().hex}")

    def step(action: str, operation: Callable[[], T]) -> T:
        return _with_retries(action, operation, policy, clock)

    try:
        step(
            "write a test object to",
            lambda: client.put_object(Bucket=bucket, Key=key, Body=CHECK_BODY),
        )
        listed = step(
            "list the test object in", lambda: client.list_objects_v2(Bucket=bucket, Prefix=key)
        )
        if key not in (entry.get("Key") for entry in listed.get("Contents", [])):
            raise ObjectStorageError(
                "list the test object in", "the object just written is not listed", ()
            )
        step("delete the test object from", lambda: client.delete_object(Bucket=bucket, Key=key))
        if storage.region is not None:
            step("find the region of", lambda: _confirm_region(client, bucket, storage.region))
    except ObjectStorageError as error:
        return str(error)
    finally:
        if own_client:
            client.close()
    return None


def _confirm_region(client: Any, bucket: str, region: str) -> None:
    """HeadBucket answers with the bucket's region, also on a redirect: botocore would otherwise
    follow AWS to the right region and hide a wrong setting."""
    try:
        answer = client.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as error:
        _refuse_other_region(error.response, region)
        raise
    _refuse_other_region(answer, region)


def _refuse_other_region(response: Mapping[str, Any], region: str) -> None:
    actual = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get(BUCKET_REGION_HEADER)
    if not actual or actual == region:
        return
    named = f" ({actual})" if actual in _spec_regions() else ""
    raise _StoragePermanentError(f"the bucket is in another region{named}", ("s3_bucket_region",))


def _spec_regions() -> frozenset[str]:
    """The regions spec.json lists: the only region names a message repeats from an answer."""
    s3_option = connection_specification()["properties"][OBJECT_STORAGE_FIELD]["oneOf"][1]
    return frozenset(s3_option["properties"]["s3_bucket_region"]["enum"]) - {""}
