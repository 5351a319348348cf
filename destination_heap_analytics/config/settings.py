"""Parse the raw Airbyte config once into a small, immutable, typed object.

Everything downstream receives a `HeapConfig`, never the raw dict, so a bad config is reported
once, here, with the name of the field to fix, and the caller's dict is never mutated (0.1.0 turned
`property_columns` into a list in place, so a second `write()` with the same dict failed).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any
from urllib.parse import SplitResult, urlsplit

from destination_heap_analytics.config.schema import (
    ConfigError,
    check_against_spec,
    chosen_option,
    connection_specification,
    spec_default,
    with_spec_defaults,
)
from destination_heap_analytics.heap import limits as heap_limits

StreamId = tuple[str | None, str]
"""A stream as Airbyte names it: (namespace or None, name)."""


def stream_label(stream: StreamId) -> str:
    """`namespace.name`, or the name alone, for log lines and errors."""
    namespace, name = stream
    return f"{namespace}.{name}" if namespace else name


class ApiType(StrEnum):
    TRACK = "track"
    ADD_USER_PROPERTIES = "add_user_properties"
    ADD_ACCOUNT_PROPERTIES = "add_account_properties"
    IDENTIFY = "identify"
    DELETE_USERS = "delete_users"

    @property
    def form(self) -> ApiForm:
        return _FORMS[self]

    @property
    def bulk_key(self) -> str | None:
        """The array key that turns a request body into Heap's bulk form (None: no bulk form)."""
        return self.form.bulk_key


@dataclass(frozen=True)
class ApiForm:
    """How Heap takes the items of one API: the endpoint and the shape of a request."""

    path: str
    """Under the base URL (heap_limits)."""
    bulk_key: str | None
    """The array of the bulk form; None when Heap documents no bulk form (one item a request)."""
    single_form: bool
    """A one-item body without the array exists (what `batch_size: 1` sends)."""
    app_id_in_body: bool
    """The body carries `app_id` (the ingestion APIs); the User Deletion API's token names the
    app instead."""
    max_items: int
    """Items per request at most, whatever batch_size says."""
    sends_properties: bool = True


_FORMS = {
    ApiType.TRACK: ApiForm(
        heap_limits.TRACK_PATH, "events", True, True, heap_limits.MAX_ITEMS_PER_BULK_REQUEST
    ),
    ApiType.ADD_USER_PROPERTIES: ApiForm(
        heap_limits.ADD_USER_PROPERTIES_PATH,
        "users",
        True,
        True,
        heap_limits.MAX_ITEMS_PER_BULK_REQUEST,
    ),
    ApiType.ADD_ACCOUNT_PROPERTIES: ApiForm(
        heap_limits.ADD_ACCOUNT_PROPERTIES_PATH,
        "accounts",
        True,
        True,
        heap_limits.MAX_ITEMS_PER_BULK_REQUEST,
    ),
    ApiType.IDENTIFY: ApiForm(
        heap_limits.IDENTIFY_PATH, None, True, True, 1, sends_properties=False
    ),
    ApiType.DELETE_USERS: ApiForm(
        heap_limits.USER_DELETION_PATH,
        "users",
        False,
        False,
        heap_limits.MAX_USERS_PER_DELETION_REQUEST,
        sends_properties=False,
    ),
}


@dataclass(frozen=True)
class ColumnPath:
    """A column as the user wrote it (`identities.connection`) and its compiled path segments."""

    name: str
    segments: tuple[str, ...]

    @classmethod
    def parse(cls, raw: str, field: str) -> ColumnPath:
        name = raw.strip()
        if not name:
            raise ConfigError(field, "a column name is empty")
        segments = tuple(name.split("."))
        if any(not segment for segment in segments):
            raise ConfigError(
                field, "a column name has an empty part; write dot paths like 'a.b.0.c'"
            )
        return cls(name=name, segments=segments)


@dataclass(frozen=True)
class PropertyColumn:
    """A property column: the value at `path` is sent under `name` (`plan as subscription_plan`;
    without `as`, the name is the path as written).

    `enclosed`: another listed column holds this one (`a.b` inside `a`, `a.b as x.b` inside
    `a as x`): its name and its path continue the other's the same way, so both read the same
    part of the record. The transform applies it after the columns that hold it, and keeps
    theirs where the two give one name (`transformer.merge_enclosed`).
    """

    path: ColumnPath
    name: str
    enclosed: bool = False


@dataclass(frozen=True)
class ColumnMapping:
    """Which record columns feed which Heap fields; `property_columns=None` means every leaf.

    `exclude_columns` are dotted record paths never sent as properties, with everything under
    them; `event_name` is a constant event name, the alternative to `event_column` for track.
    """

    api_type: ApiType
    property_columns: tuple[PropertyColumn, ...] | None
    """In the order they are applied: every column after the columns that enclose it; empty for
    the APIs that send no properties (identify, delete_users)."""
    identity_column: ColumnPath | None = None
    user_id_column: ColumnPath | None = None
    """The Heap SDK user_id: track (instead of identity_column), identify, delete_users."""
    event_column: ColumnPath | None = None
    event_name: str | None = None
    timestamp_column: ColumnPath | None = None
    account_id_column: ColumnPath | None = None
    idempotency_key_column: ColumnPath | None = None
    exclude_columns: frozenset[str] = frozenset()

    def configured_columns(self) -> tuple[ColumnPath, ...]:
        """Every explicitly named column, excluded ones too, for the reports of columns the
        data or the catalog's schema never has (a misspelt exclusion excludes nothing)."""
        singles = (
            self.identity_column,
            self.user_id_column,
            self.event_column,
            self.timestamp_column,
            self.account_id_column,
            self.idempotency_key_column,
        )
        properties = tuple(column.path for column in self.property_columns or ())
        excluded = tuple(ColumnPath(name, tuple(name.split("."))) for name in self.exclude_columns)
        return properties + tuple(c for c in singles if c is not None) + excluded


@dataclass(frozen=True)
class StreamMapping:
    """A `streams` entry: the mapping of one stream (of one namespace, or of any when None)."""

    stream: str
    namespace: str | None
    mapping: ColumnMapping


@dataclass(frozen=True)
class RateLimit:
    """At most `items` items in any rolling window of `window_seconds`."""

    items: int
    window_seconds: float


@dataclass(frozen=True)
class Pacing:
    """Client-side pacing; both None means no pacing at all."""

    per_app: RateLimit | None
    per_identity: RateLimit | None
    time_scale: float = 1.0

    @property
    def enabled(self) -> bool:
        return self.per_app is not None or self.per_identity is not None


NO_PACING = Pacing(per_app=None, per_identity=None)
"""No client-side pacing: user deletion, `max_events_per_minute: 0`, a dry run."""


OBJECT_STORAGE_FIELD = "object_storage_config"
"""The top-level field Airbyte's platform reads for rejected-records storage (its exact name)."""

MAX_S3_KEY_BYTES = 1024
"""S3 object keys hold at most 1,024 UTF-8 bytes
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html)."""

MAX_BUCKET_PATH_BYTES = 500
"""The rest of a key (sync id, namespace, stream, file name) takes at most about 510 of
MAX_S3_KEY_BYTES (rejected_records.py caps each part), so the prefix keeps 500."""

_BUCKET_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")
"""What botocore accepts as a bucket name (its client-side check); AWS's own rules are stricter,
S3-compatible stores' looser, so the store itself judges the rest."""


@dataclass(frozen=True)
class S3Storage:
    """`object_storage_config` with `storage_type: S3`: where rejected records are written.

    The credentials are left out of `repr`, so a logged or printed config never shows them.
    """

    bucket_name: str
    bucket_path: str
    """The prefix without leading or trailing slashes; empty for the bucket's root."""
    region: str | None = None
    """None: botocore's own resolution (AWS_REGION, the AWS config), else us-east-1."""
    endpoint: str | None = None
    """An S3-compatible store's URL; None for AWS S3."""
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    role_arn: str | None = None
    gzip: bool = False


@dataclass(frozen=True)
class HeapConfig:
    app_id: str
    base_url: str
    default_mapping: ColumnMapping | None
    """The top-level `api`: the mapping of every stream `streams` does not list (which entry
    applies to which catalog stream is `streams.StreamMatcher`'s to say)."""
    stream_mappings: tuple[StreamMapping, ...]
    batch_size: int
    max_concurrent_requests: int
    pacing_by_api: Mapping[ApiType, Pacing]
    max_retry_seconds: float
    pacing_time_scale: float = 1.0
    dry_run: bool = False
    """Transform and count everything, send nothing, emit no state."""
    object_storage: S3Storage | None = None
    """Where rejected records go (`object_storage_config`); None when not configured."""
    api_key: str | None = field(default=None, repr=False)
    """The User Deletion API's key (`api_key`); required when a mapping deletes users."""

    def pacing_for(self, api_type: ApiType) -> Pacing:
        return self.pacing_by_api[api_type]

    @property
    def uses_bulk_form(self) -> bool:
        """batch_size 1 keeps 0.1.0's single-item body; anything larger uses Heap's bulk form."""
        return self.batch_size > 1

    def bulk_key_for(self, api_type: ApiType) -> str | None:
        """The array key of `api_type`'s requests, None for its single form: the bulk form
        unless batch_size is 1, an API with one form takes that one."""
        form = api_type.form
        if form.bulk_key is None or (form.single_form and not self.uses_bulk_form):
            return None
        return form.bulk_key

    def items_per_request(self, api_type: ApiType) -> int:
        """batch_size, within the API's own cap: identify takes one pair a request, and user
        deletion always goes in requests of up to 10,000 users, whatever batch_size says."""
        form = api_type.form
        if not form.single_form:
            return form.max_items
        return min(self.batch_size, form.max_items)


def endpoint_url(base_url: str, api_type: ApiType) -> str:
    """The endpoint under `base_url`; unlike 0.1.0's urljoin, a path prefix in base_url is
    kept."""
    return f"{base_url}{api_type.form.path}"


def auth_token_url(base_url: str) -> str:
    """Where the User Deletion API's access tokens are obtained, under `base_url` alike."""
    return f"{base_url}{heap_limits.AUTH_TOKEN_PATH}"


API_KEY_FIELD = "api_key"
MAIN_PRODUCTION_ONLY = (
    "Heap's User Deletion API key works only with the Main Production environment's ID as app_id"
)


def api_key_required_error() -> ConfigError:
    """A mapping deletes users and the config has no api_key."""
    return ConfigError(
        API_KEY_FIELD,
        "is required when a mapping deletes users (api_type delete_users, or a soft delete in "
        "Airbyte's mapping screen): set the key of Heap's User Deletion API. "
        f"{MAIN_PRODUCTION_ONLY}",
    )


NO_MAPPING = (
    "is required unless 'streams' lists a mapping: set a default mapping in 'api', one per "
    "stream in 'streams', or both (or map the streams to Heap's objects in Airbyte's mapping "
    "screen)"
)


def no_mapping_error() -> ConfigError:
    """The config maps no stream and the catalog names no Heap object for any."""
    return ConfigError("api", NO_MAPPING)


def parse_config(raw: Mapping[str, Any], require_mapping: bool = True) -> HeapConfig:
    """Validate every field and build the typed config; raises ConfigError naming the field.

    Types, ranges, required fields and defaults come from spec.json alone (config/schema.py);
    what follows are the rules a JSON schema cannot state: dot paths, https, non-blank values.
    `require_mapping=False` accepts a config with neither `api` nor `streams`: a connection that
    maps its streams in Airbyte's mapping screen (data activation) needs none, which only the
    configured catalog can tell (`check`, `discover`, and `write` before it reads the catalog).
    """
    config = with_spec_defaults(raw)
    check_against_spec(config)
    default_mapping = _parse_mapping(config["api"], "api") if "api" in config else None
    stream_mappings = _parse_streams(config.get("streams", []))
    if require_mapping and default_mapping is None and not stream_mappings:
        raise no_mapping_error()
    batch_size = int(config["batch_size"])
    scale = pacing_time_scale()
    api_key = config.get(API_KEY_FIELD, "").strip() or None
    mappings = [default_mapping, *(entry.mapping for entry in stream_mappings)]
    if api_key is None and any(m and m.api_type is ApiType.DELETE_USERS for m in mappings):
        raise api_key_required_error()
    return HeapConfig(
        app_id=_parse_app_id(config["app_id"]),
        base_url=parse_base_url(config["base_url"]),
        default_mapping=default_mapping,
        stream_mappings=stream_mappings,
        batch_size=batch_size,
        max_concurrent_requests=int(config["max_concurrent_requests"]),
        pacing_by_api=MappingProxyType(
            {api: _parse_pacing(config, api, batch_size > 1, scale) for api in ApiType}
        ),
        max_retry_seconds=int(config["max_retry_seconds"]),
        pacing_time_scale=scale,
        dry_run=bool(config["dry_run"]),
        object_storage=parse_object_storage(config.get(OBJECT_STORAGE_FIELD)),
        api_key=api_key,
    )


def _parse_app_id(value: str) -> str:
    app_id = value.strip()
    if not app_id:
        raise ConfigError("app_id", "is empty: set the Environment ID of your Heap project")
    return app_id


LOOPBACK_NAMES = frozenset({"localhost"})


def parse_base_url(value: str) -> str:
    """https only, so the app_id (Heap's only credential) never travels in clear text.

    Plain http is allowed for loopback hosts alone, where the local Heap sandbox runs in tests.
    An empty value means the spec's default, as a cleared field in a form does.
    """
    url = value.strip().rstrip("/")
    if not url:
        return spec_default("base_url")
    parts = _split_url(url)
    host = parts.hostname if parts is not None else None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ConfigError(
            "base_url",
            f"must be a full URL such as {heap_limits.US_BASE_URL} or {heap_limits.EU_BASE_URL}",
        )
    if parts.query or parts.fragment:
        raise ConfigError("base_url", "must not contain a query string or fragment")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigError(
            "base_url",
            "must use https:// (plain http is only allowed for localhost / 127.0.0.1 / ::1)",
        )
    return url


def _split_url(url: str) -> SplitResult | None:
    try:
        return urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_object_storage(raw: Mapping[str, Any] | None) -> S3Storage | None:
    """`object_storage_config`, already judged against spec.json (types, the S3 option's required
    fields, the region list); what follows are the rules the schema cannot state."""
    if raw is None or raw["storage_type"] == "None":
        return None
    bucket_name = _parse_bucket_name(raw["s3_bucket_name"])  # fields in the form's order
    bucket_path = _parse_bucket_path(raw["bucket_path"])
    endpoint = _parse_s3_endpoint(raw.get("s3_endpoint", ""))
    access_key_id = _optional_text(raw, "access_key_id")
    secret_access_key = _optional_text(raw, "secret_access_key")
    if (access_key_id is None) != (secret_access_key is None):
        raise ConfigError(
            _storage_field("access_key_id"),
            "go together: set both, or neither to use a role or the environment's credentials",
            _storage_field("secret_access_key"),
        )
    return S3Storage(
        bucket_name=bucket_name,
        bucket_path=bucket_path,
        region=raw["s3_bucket_region"] or None,
        endpoint=endpoint,
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        role_arn=_parse_role_arn(raw.get("role_arn", "")),
        gzip=raw["compression"]["compression_type"] == "GZIP",
    )


def _storage_field(name: str) -> str:
    return f"{OBJECT_STORAGE_FIELD}.{name}"


def _optional_text(raw: Mapping[str, Any], name: str) -> str | None:
    return raw.get(name, "").strip() or None


def _parse_bucket_name(value: str) -> str:
    name = value.strip()
    if not name:
        raise ConfigError(_storage_field("s3_bucket_name"), "is empty: name your S3 bucket")
    if _BUCKET_NAME.fullmatch(name) is None:
        raise ConfigError(
            _storage_field("s3_bucket_name"),
            "must be a bucket name: letters, digits, dots, hyphens and underscores, "
            "without a path or s3:// (put a path in bucket_path)",
        )
    return name


def _parse_bucket_path(value: str) -> str:
    """Slashes at either end and empty parts are dropped (`/a//b/` is `a/b`); `.` and `..` parts
    are refused, since tools that copy a bucket to disk would resolve them."""
    parts = [part for part in value.strip().split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise ConfigError(_storage_field("bucket_path"), "must not have '.' or '..' parts")
    path = "/".join(parts)
    if len(path.encode("utf-8", "surrogatepass")) > MAX_BUCKET_PATH_BYTES:
        raise ConfigError(
            _storage_field("bucket_path"),
            f"is longer than {MAX_BUCKET_PATH_BYTES} bytes; "
            f"S3 keys hold at most {MAX_S3_KEY_BYTES}",
        )
    return path


def _parse_s3_endpoint(value: str) -> str | None:
    """http is allowed, as Airbyte's connectors allow it for stores on a private network
    (MinIO): signatures keep the secret key off the wire, but the records travel in clear."""
    if not value.strip():
        return None
    url = value.strip().rstrip("/")
    parts = _split_url(url)
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            _storage_field("s3_endpoint"),
            "must be a full URL such as https://s3.example.com or http://localhost:9000, "
            "or empty for AWS S3",
        )
    if parts.query or parts.fragment:
        raise ConfigError(_storage_field("s3_endpoint"), "must not contain a query or fragment")
    return url


def _parse_role_arn(value: str) -> str | None:
    arn = value.strip()
    if not arn:
        return None
    if not arn.startswith("arn:") or ":role/" not in arn:
        raise ConfigError(
            _storage_field("role_arn"),
            "must be an IAM role ARN such as arn:aws:iam::123456789012:role/name",
        )
    return arn


SINGLE_COLUMN_FIELDS = frozenset(field.name for field in fields(ColumnMapping)) - {
    "api_type",
    "property_columns",
    "event_name",
    "exclude_columns",
}
"""The `api` settings that name one column; which of them an API type takes, and which it
requires, is read from that API type's option in spec.json."""


def _parse_streams(entries: list[Mapping[str, Any]]) -> tuple[StreamMapping, ...]:
    parsed: list[StreamMapping] = []
    listed: dict[tuple[str | None, str], int] = {}
    for index, entry in enumerate(entries):
        field = f"streams[{index}]"
        name = entry["stream"].strip()
        if not name:
            raise ConfigError(f"{field}.stream", "is empty: name a stream of the catalog")
        namespace = entry.get("namespace", "").strip() or None
        if (namespace, name) in listed:
            raise ConfigError(
                f"{field}.stream",
                f"stream '{name}' is already listed in streams[{listed[namespace, name]}]; "
                "list each stream once",
            )
        listed[namespace, name] = index
        parsed.append(StreamMapping(name, namespace, _parse_mapping(entry["api"], f"{field}.api")))
    return tuple(parsed)


def _parse_mapping(api: Mapping[str, Any], field: str) -> ColumnMapping:
    """One `api` object (top-level or a `streams` entry's); `field` names it in errors."""
    api_type = ApiType(api["api_type"])
    option = chosen_option(connection_specification()["properties"]["api"], api)
    columns = {
        name: _parse_single_column(api, name, f"{field}.{name}", name in option["required"])
        for name in option["properties"]
        if name in SINGLE_COLUMN_FIELDS
    }
    event_name = None
    if api_type is ApiType.TRACK:
        event_name = _parse_event_name(api, field, has_column=columns["event_column"] is not None)
    if api_type in ONE_USER_KEY_APIS:
        _check_one_user_key(columns, field)
    if not api_type.form.sends_properties:
        return ColumnMapping(api_type=api_type, property_columns=(), **columns)
    property_columns = _parse_property_columns(api["property_columns"], f"{field}.property_columns")
    excluded = _parse_exclude_columns(api.get("exclude_columns", ""), f"{field}.exclude_columns")
    for column in property_columns or ():
        name = column.path.name
        if any(name == base or name.startswith(f"{base}.") for base in excluded):
            raise ConfigError(
                f"{field}.exclude_columns",
                "excludes a column that property_columns lists; exclusions apply to what * "
                "or an object column sends, so remove the column from one of the two",
            )
    return ColumnMapping(
        api_type=api_type,
        property_columns=property_columns,
        event_name=event_name,
        exclude_columns=excluded,
        **columns,
    )


def _parse_single_column(
    api: Mapping[str, Any], name: str, field: str, required: bool
) -> ColumnPath | None:
    value = api.get(name, "")
    if not value.strip():
        if required:
            raise ConfigError(field, "is required for this API type")
        return None
    if "," in value:
        raise ConfigError(field, "takes a single column, not a comma-separated list")
    return ColumnPath.parse(value, field)


ONE_USER_KEY_APIS = frozenset({ApiType.TRACK, ApiType.DELETE_USERS})
"""The APIs that name a user by identity or by user_id: exactly one of the two columns."""


def _check_one_user_key(columns: Mapping[str, ColumnPath | None], field: str) -> None:
    """Heap takes `identity` or `user_id`, "both cannot be provided at the same time"."""
    identity, user_id = columns["identity_column"], columns["user_id_column"]
    names = f"{field}.identity_column", f"{field}.user_id_column"
    if identity is not None and user_id is not None:
        raise ConfigError(names[0], "are both set; set exactly one of them", names[1])
    if identity is None and user_id is None:
        raise ConfigError(names[0], "are both empty; set exactly one of them", names[1])


def _parse_event_name(api: Mapping[str, Any], field: str, has_column: bool) -> str | None:
    """Track takes the event name from a column or as a constant: exactly one of the two."""
    name = api.get("event_name", "").strip() or None
    column_field, name_field = f"{field}.event_column", f"{field}.event_name"
    if has_column and name is not None:
        raise ConfigError(column_field, "are both set; set exactly one of them", name_field)
    if not has_column and name is None:
        raise ConfigError(column_field, "are both empty; set exactly one of them", name_field)
    if name is not None and len(name) > heap_limits.MAX_EVENT_NAME_LENGTH:
        raise ConfigError(
            f"{field}.event_name",
            f"is longer than Heap's {heap_limits.MAX_EVENT_NAME_LENGTH} characters",
        )
    return name


_RENAME = re.compile(r"(?P<path>.+?)\s+as(\s+(?P<name>.*))?", re.IGNORECASE | re.DOTALL)
"""`path as name`; a trailing `as` with no name is a rename left unfinished, not a column."""


def _parse_property_columns(value: str, field: str) -> tuple[PropertyColumn, ...] | None:
    entries = [entry.strip() for entry in value.split(",")]
    entries = [entry for entry in entries if entry]
    if not entries or entries == ["*"]:
        return None
    if "*" in entries:
        raise ConfigError(field, "use * alone (all columns) or a list of columns, not both")
    columns: list[PropertyColumn] = []
    named: dict[str, int] = {}
    for position, entry in enumerate(dict.fromkeys(entries), start=1):
        column = _parse_property_column(entry, field)
        if column.name in named:
            raise ConfigError(
                field,
                f"entries {named[column.name]} and {position} give the same property name; "
                "rename one with 'as'",
            )
        named[column.name] = position
        columns.append(column)
    depths = [
        _enclosing_columns(column, position, columns, named, field)
        for position, column in enumerate(columns, start=1)
    ]
    ordered = sorted(zip(depths, columns, strict=True), key=lambda pair: pair[0])
    return tuple(replace(column, enclosed=depth > 0) for depth, column in ordered)


def _enclosing_columns(
    column: PropertyColumn,
    position: int,
    columns: list[PropertyColumn],
    named: dict[str, int],
    field: str,
) -> int:
    """How many listed columns enclose `column`; a ConfigError when another one could give a
    name it gives from another part of the record.

    An object column sends its leaves under its name and a dot, so two columns can give one
    name exactly when one name continues the other (`b` and `b.c`). That is safe only when the
    path continues the same way (`a`, `a.b`: the same value); `x as b.c, b` would let `b`'s
    leaf `c` overwrite `x`."""
    enclosing = 0
    for dot in [i for i, char in enumerate(column.name) if char == "."]:
        outer_position = named.get(column.name[:dot])
        if outer_position is None:
            continue
        outer = columns[outer_position - 1]
        if column.path.name != outer.path.name + column.name[dot:]:
            first, second = sorted((outer_position, position))
            raise ConfigError(
                field,
                f"entries {first} and {second} can give the same property name: entry "
                f"{position}'s starts with entry {outer_position}'s and a dot, where an object "
                f"in entry {outer_position} sends its fields, but entry {position} reads "
                "another part of the record; rename one with 'as'",
            )
        enclosing += 1
    return enclosing


def _parse_property_column(entry: str, field: str) -> PropertyColumn:
    renamed = _RENAME.fullmatch(entry)
    if renamed is None:
        path = ColumnPath.parse(entry, field)
        return PropertyColumn(path, _property_name(path.name, field))
    name = _property_name((renamed["name"] or "").strip(), field)
    return PropertyColumn(ColumnPath.parse(renamed["path"], field), name)


def _property_name(name: str, field: str) -> str:
    """Heap's limit on property names, for the name after `as` and for a column sent under
    its own name alike: otherwise every item of the stream would carry a name Heap refuses."""
    if not name or len(name) > heap_limits.MAX_PROPERTY_LENGTH:
        raise ConfigError(
            field,
            "a property name (the name after 'as', or the column as written) must have 1 to "
            f"{heap_limits.MAX_PROPERTY_LENGTH} characters; shorten a long column's with 'as'",
        )
    return name


def _parse_exclude_columns(value: str, field: str) -> frozenset[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    return frozenset(ColumnPath.parse(name, field).name for name in names)


def _parse_pacing(raw: Mapping[str, Any], api_type: ApiType, bulk: bool, scale: float) -> Pacing:
    """Heap's documented limits by default; max_events_per_minute overrides the per-app one
    (of each API type: Heap documents its limits per API).

    0 turns client-side pacing off entirely (per identity too), for users whose Heap contract
    raises the limits. User deletion is never paced (heap_limits says why).
    """
    if api_type is ApiType.DELETE_USERS:
        return NO_PACING
    per_identity = _documented_identity_limit(api_type, bulk)
    value = raw.get("max_events_per_minute")
    if value is None:
        per_app = _documented_app_limit(api_type, bulk)
    else:
        minute = int(value)
        if minute == 0:
            return NO_PACING
        per_app = RateLimit(minute, 60.0)
    return Pacing(
        per_app=_scaled(per_app, scale), per_identity=_scaled(per_identity, scale), time_scale=scale
    )


PACING_TIME_SCALE_ENV = "DESTINATION_HEAP_ANALYTICS_PACING_TIME_SCALE"
"""For the benchmark and tests only: shrinks every rate-limit window (0.1 makes Heap's minute
six seconds) so pacing can be measured against a sandbox enforcing the same scaled limit."""


def pacing_time_scale() -> float:
    raw = os.environ.get(PACING_TIME_SCALE_ENV)
    if raw is None or raw == "":
        return 1.0
    try:
        scale = float(raw)
    except ValueError:
        scale = 0.0
    if not 0 < scale <= 1:
        raise ConfigError(PACING_TIME_SCALE_ENV, "must be a number above 0 and at most 1")
    return scale


def _scaled(limit: RateLimit | None, scale: float) -> RateLimit | None:
    if limit is None or scale == 1.0:
        return limit
    return RateLimit(limit.items, limit.window_seconds * scale)


def _documented_app_limit(api_type: ApiType, bulk: bool) -> RateLimit | None:
    """Heap documents a per-app limit for bulk track alone."""
    if api_type is ApiType.TRACK and bulk:
        return RateLimit(*heap_limits.TRACK_BULK_LIMIT_PER_APP)
    return None


def _documented_identity_limit(api_type: ApiType, bulk: bool) -> RateLimit | None:
    """Per identity (or user_id): the single forms' limit, identify's too (it has only a single
    form; heap_limits says why), and bulk track's."""
    if api_type in (ApiType.ADD_ACCOUNT_PROPERTIES, ApiType.DELETE_USERS):
        return None
    if not bulk or api_type is ApiType.IDENTIFY:
        return RateLimit(*heap_limits.SINGLE_REQUEST_LIMIT_PER_IDENTITY)
    if api_type is ApiType.TRACK:
        return RateLimit(*heap_limits.TRACK_BULK_LIMIT_PER_IDENTITY)
    return None
