"""A local, Heap-compatible server for demos, tests and benchmarks.

Heap offers no sandbox and silently accepts unknown app_ids, so the connector cannot be
exercised against the real service without polluting a real environment. This module mimics
the documented contract of Heap's server-side APIs strictly, records what it accepted, and can
inject the failures Heap does not document (429, 5xx, dropped connections, rate limits) so retry
and idempotency behaviour can be tested deterministically. The endpoints (their names, used by
the ``endpoints`` fault scope, the script and the per-endpoint counters, in brackets):

- ``POST /api/track`` [track], ``/api/add_user_properties`` [add_user_properties] and
  ``/api/add_account_properties`` [add_account_properties], single and bulk forms (1000 items).
  A track event names its user by ``identity`` or by ``user_id`` (the string form of an integer
  from 0 to 2**53-1, never a JSON number), exactly one of the two, in both forms.
- ``POST /api/v1/identify`` [identify]: ``app_id``, ``identity``, ``user_id`` (string form, as on
  track), optional ``timestamp``; one pair a request (no bulk form); ``200 {}``. Heap's two
  ignore rules are applied as Heap applies them, silently (still ``200 {}``): a second identity
  for a ``user_id`` is ignored, and so is an 11th ``user_id`` for one identity within a month
  (a rolling 30 days of the sandbox clock). Every call is recorded with its outcome:
  ``applied``, ``repeated`` (the pair was already applied), ``ignored_identity_taken`` or
  ``ignored_user_id_limit``. Track items are not rewritten by an applied pair.
- ``POST /api/public/v0/auth_token`` [auth_token]: HTTP Basic ``app_id:api_key`` answers
  ``200 {"access_token": "…"}``; a missing, malformed or wrong credential answers 401. Valid
  keys are configured per app_id (none by default, so every credential is refused). A token
  lives 5 minutes (configurable) of the sandbox clock, which tests can advance.
- ``POST /api/public/v0/user_deletion`` [user_deletion] with ``Authorization: Bearer <token>``:
  ``{"users": [{"identity": "…"} | {"user_id": 123}, …]}``, 1 to 10,000 users, each with exactly
  one of the two; ``user_id`` is a JSON integer from 0 to 2**53-1 here (Heap's example sends a
  number, unlike track and identify). A missing, unknown or expired token answers 401 (checked
  before the body). Success answers ``201`` with ``deletion_request_id`` (a fresh UUID),
  ``deletion_request_location`` (the status path) and ``status: "pending"``. Deletions are
  recorded, not applied: accepted items stay as they were, so a test can compare both.
- ``GET /api/public/v0/deletion_status/<id>`` [deletion_status], Bearer auth: ``200 {"status":
  "pending"}`` for a request of the token's app, 404 otherwise.

Errors of the three User Deletion endpoints are ``{"err": {"message": …}}`` as Heap documents
them; identify and the ingestion APIs answer ``{"message": …}`` (text for account properties).

Run it out of process with::

    python -m integration_tests.heap_sandbox --port 0 [--api-key APP_ID:KEY ...]

Control API (never subject to faults), JSON in and out:

- ``GET /_sandbox/state`` (counters, accepted ingestion items, request log),
  ``GET /_sandbox/counters``, ``GET|POST /_sandbox/faults``, ``POST /_sandbox/reset``.
- ``GET /_sandbox/events?user_id=…`` or ``?identity=…``: ``{"events": [...]}``, accepted track
  items of that user.
- ``GET /_sandbox/identify``: ``{"calls": [{app_id, identity, user_id, [timestamp], outcome,
  received_at}], "applied": {"<app_id>": {"<user_id>": "<identity>"}}}``.
- ``GET /_sandbox/deletions``: ``{"requests": [{deletion_request_id, app_id, users,
  token_number, received_at}]}``.
- ``GET|POST /_sandbox/auth``: ``{"api_keys": {"<app_id>": ["key", ...]},
  "token_lifetime_seconds": 300}`` (POST sets either; ``api_keys`` replaces the whole map) and
  answers those plus ``"tokens": [{number, app_id, issued_at, expires_at, valid}]``.
  ``POST /_sandbox/auth/expire`` expires every token issued so far: ``{"expired": n}``.
- ``GET|POST /_sandbox/clock``: ``{"advance_seconds": s}`` moves the sandbox clock (token expiry
  and the identify month) forward; answers ``{"offset_seconds": …, "now": …}``.
- ``GET|POST /_sandbox/script``: ``{"endpoint": "<name>", "answers": [answer, ...]}`` queues
  answers for that endpoint's next requests, one consumed per request, before any other fault;
  an answer is one of ``{"pass": true}`` (handled as usual), ``{"status": 400..599, "message"?,
  "retry_after"?}``, ``{"drop": true}`` (nothing stored), ``{"drop_after_store": true}``,
  ``{"hang": true}`` (held unanswered until released, reset or stopped, then dropped; nothing
  stored) or
  ``{"expire_token": true}`` (Bearer endpoints: the presented token expires, so the request
  answers 401 and so does any retry with that token), each with an optional ``"times": n``.
  Answers ``{"queued": {"<name>": [answer, ...]}, "hanging": n}``.
- ``POST /_sandbox/release`` lets hung requests go (``{"released": n}``);
  ``POST /_sandbox/wait_hanging`` ``{"count": 1, "timeout_seconds": 10}`` waits until that many
  requests hang: ``{"hanging": n, "reached": bool}``.

In process, ``HeapSandbox`` offers the same: ``events``, ``identify_calls``, ``identities``,
``deletion_requests``, ``auth``, ``set_auth``, ``expire_tokens``, ``clock``, ``advance_clock``,
``script``, ``scripted``, ``release`` and ``wait_hanging``.

The ``endpoints`` fault setting (a list of endpoint names, or null for all) scopes every other
fault setting, e.g. ``{"fixed_status": 503, "endpoints": ["user_deletion"]}``; the rate limit
applies to the ingestion APIs and identify only (Heap documents none for the others).

Where this sandbox is stricter or more specific than Heap's documentation:

- validation errors are answered as ``{"message": "<location>: <rule>"}`` (Heap documents ``{}``)
  and never echo the offending value, unless the ``echo_refused`` fault asks for an echo of the
  refused item (to test that the connector never logs what a server quotes back);
- a bulk body with one invalid item is rejected as a whole (the worst case, as Heap does not
  document partial failures);
- ``user_id`` must be in canonical decimal form (no sign, no leading zero);
- a user deletion body holds only ``users`` (the token names the app) and more than 10,000
  users is a 400 (Heap documents only the limit);
- rate limiting answers 429 with ``Retry-After`` (Heap documents neither);
- the rate limiter keeps separate windows per endpoint and app_id, because Heap documents its
  limits per API.

It deliberately depends only on the standard library (plus orjson when available) and never
imports the connector package, so it can judge the connector from the outside.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import email.utils
import gc
import json
import math
import random
import re
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

try:
    import orjson

    def _dumps(obj: Any) -> bytes:
        """Serialise with orjson: the state endpoint may hold a million items."""
        return orjson.dumps(obj)

    _loads = orjson.loads
except ImportError:  # pragma: no cover - orjson is optional

    def _dumps(obj: Any) -> bytes:
        """Serialise with the standard library when orjson is missing."""
        return json.dumps(obj, separators=(",", ":")).encode()

    _loads = json.loads

HOST = "127.0.0.1"
MAX_BULK_ITEMS = 1000
MAX_EVENT_CHARS = 1024
MAX_IDENTITY_CHARS = 255
MAX_PROPERTY_CHARS = 1023
MAX_USER_ID = 2**53 - 1
MAX_DELETION_USERS = 10_000
MAX_USER_IDS_PER_IDENTITY = 10
IDENTIFY_WINDOW_SECONDS = 30 * 24 * 3600.0
"""Heap's "per month" for the 10 user_ids an identity may gather, taken as a rolling 30 days."""
TOKEN_LIFETIME_SECONDS = 300.0

API_TYPES = ("track", "add_user_properties", "add_account_properties")
API_PATHS = {f"/api/{name}": name for name in API_TYPES}
DELETION_STATUS_PREFIX = "/api/public/v0/deletion_status/"
ENDPOINT_PATHS = {
    **API_PATHS,
    "/api/v1/identify": "identify",
    "/api/public/v0/auth_token": "auth_token",
    "/api/public/v0/user_deletion": "user_deletion",
}
ENDPOINTS = (*API_TYPES, "identify", "auth_token", "user_deletion", "deletion_status")
"""Every endpoint's name, as used by the ``endpoints`` fault scope, the script and counters."""
BEARER_ENDPOINTS = frozenset({"user_deletion", "deletion_status"})
ERR_ENDPOINTS = frozenset({"auth_token", *BEARER_ENDPOINTS})
"""The User Deletion API's endpoints, whose error bodies are ``{"err": {"message": ...}}``."""
ARRAY_KEYS = {
    "track": "events",
    "add_user_properties": "users",
    "add_account_properties": "accounts",
}
TEXT_API = "add_account_properties"  # Heap answers this endpoint in text/plain

_TRACK_FIELDS = frozenset(
    {"event", "identity", "user_id", "timestamp", "properties", "idempotency_key", "session_id"}
)
_USER_FIELDS = frozenset({"identity", "properties"})
_ACCOUNT_FIELDS = frozenset({"account_id", "properties"})
_IDENTIFY_FIELDS = frozenset({"identity", "user_id", "timestamp"})
_DELETION_USER_FIELDS = frozenset({"identity", "user_id"})
_TIMESTAMP_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}T", re.ASCII)
_NAME_PREVIEW = 100  # longest field name echoed in a location

ECHO_FORMS = {
    "json": lambda item: json.dumps(item, ensure_ascii=False),
    "escaped": lambda item: json.dumps(json.dumps(item)),
    "repr": repr,
    "text": lambda item: json.dumps(item, ensure_ascii=False),
}
"""How the ``echo_refused`` fault quotes a refused item in its 400 message: its JSON as is; its
JSON inside a JSON string (``\\"`` and ``\\u00e9`` escapes survive the envelope's parsing); a
Python repr; or its JSON in a ``text/plain`` body whatever the endpoint."""


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


class ValidationError(Exception):
    """A 400 answer; its text names the location and the rule, never the offending value."""


class _ItemError(Exception):
    """An item-level failure with a path relative to the item.

    The bulk loop adds the ``events[i]`` prefix only on failure, so the happy path formats no
    strings at all.
    """

    def __init__(self, path: str, rule: str) -> None:
        super().__init__(path, rule)
        self.path = path
        self.rule = rule


def _name(key: str) -> str:
    """Shorten a field name used as a location so a huge unknown key cannot bloat a message."""
    return key if len(key) <= _NAME_PREVIEW else key[:_NAME_PREVIEW] + "..."


def _check_properties(props: Any, reserve_id: bool) -> None:
    """Apply Heap's property rules: flat string/number values, bounded lengths.

    Booleans are accepted too because the connector sends them as JSON booleans.
    """
    if type(props) is not dict:
        raise _ItemError("properties", "must be an object")
    for key, value in props.items():
        if not key:
            raise _ItemError("properties", "empty property name")
        if len(key) > MAX_PROPERTY_CHARS:
            raise _ItemError("properties", f"property name longer than {MAX_PROPERTY_CHARS} chars")
        if reserve_id and len(key) == 2 and key.lower() == "id":
            raise _ItemError(f"properties.{key}", "reserved property name")
        kind = type(value)
        if kind is str:
            if len(value) > MAX_PROPERTY_CHARS:
                raise _ItemError(
                    f"properties.{_name(key)}", f"longer than {MAX_PROPERTY_CHARS} characters"
                )
        elif kind is int or kind is bool:
            continue
        elif kind is float:
            if not math.isfinite(value):
                raise _ItemError(f"properties.{_name(key)}", "must be a finite number")
        else:
            raise _ItemError(f"properties.{_name(key)}", _type_rule(value))


def _type_rule(value: Any) -> str:
    """Describe why a property value's type is refused (without showing the value)."""
    if value is None:
        return "null is not allowed"
    if isinstance(value, dict):
        return "objects are not allowed"
    if isinstance(value, list):
        return "arrays are not allowed"
    return "must be a string, number or boolean"


def _check_unknown(item: dict, allowed: frozenset[str]) -> None:
    """Refuse fields Heap does not document, so connector typos surface as errors."""
    for key in item:
        if key not in allowed:
            if key == "app_id":
                raise _ItemError("app_id", "not allowed inside an item")
            raise _ItemError(_name(key), "unknown field")


def _check_string(item: dict, field: str, max_chars: int | None, required: bool) -> None:
    """Check a non-empty string field with an optional maximum length."""
    if field not in item:
        if required:
            raise _ItemError(field, "required")
        return
    value = item[field]
    if type(value) is not str:
        raise _ItemError(field, "must be a string")
    if not value:
        raise _ItemError(field, "must not be empty")
    if max_chars is not None and len(value) > max_chars:
        raise _ItemError(field, f"longer than {max_chars} characters")


def _check_user_id(value: Any) -> None:
    """Heap's user_id (track, identify) is the string form of an integer in 0..2**53-1.

    The string form of an integer is read as its canonical decimal: no sign, no leading zero.
    """
    if type(value) is not str:
        raise _ItemError("user_id", "must be a string")
    if (
        not (value.isascii() and value.isdigit())
        or len(value) > 16
        or (value[0] == "0" and len(value) > 1)
        or int(value) > MAX_USER_ID
    ):
        raise _ItemError("user_id", "must be the string form of an integer from 0 to 2**53-1")


def _check_user_id_number(value: Any) -> None:
    """The User Deletion API's user_id is a JSON integer (Heap's example: ``{"user_id": 123}``)."""
    if type(value) is not int:
        raise _ItemError("user_id", "must be an integer (a JSON number, not a string)")
    if not 0 <= value <= MAX_USER_ID:
        raise _ItemError("user_id", "must be an integer from 0 to 2**53-1")


def _check_timestamp(value: Any) -> None:
    """Accept ISO 8601 with a ``T`` separator, as in every example Heap documents."""
    if type(value) is not str:
        raise _ItemError("timestamp", "must be a string")
    if not _TIMESTAMP_PREFIX.match(value):
        raise _ItemError("timestamp", "must be ISO 8601 (YYYY-MM-DDThh:mm:ss...)")
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise _ItemError("timestamp", "must be ISO 8601 (YYYY-MM-DDThh:mm:ss...)") from None


def _validate_track(item: dict) -> None:
    """Validate one track event.

    This is the hot path of a million-event benchmark, so common cases are checked inline and
    the precise helpers run only to name the rule of a failure.
    """
    _check_unknown(item, _TRACK_FIELDS)
    event = item.get("event")
    if type(event) is not str or not 0 < len(event) <= MAX_EVENT_CHARS:
        _check_string(item, "event", MAX_EVENT_CHARS, required=True)
    if "identity" in item:
        if "user_id" in item:
            raise _ItemError("identity", "identity and user_id cannot both be provided")
        identity = item["identity"]
        if type(identity) is not str or not 0 < len(identity) <= MAX_IDENTITY_CHARS:
            _check_string(item, "identity", MAX_IDENTITY_CHARS, required=True)
    elif "user_id" in item:
        _check_user_id(item["user_id"])
    else:
        raise _ItemError("identity", "identity or user_id is required")
    if "timestamp" in item:
        _check_timestamp(item["timestamp"])
    if "properties" in item:
        _check_properties(item["properties"], reserve_id=False)
    if "idempotency_key" in item:
        _check_string(item, "idempotency_key", None, required=True)
    if "session_id" in item and type(item["session_id"]) is not str:
        raise _ItemError("session_id", "must be a string")


def _validate_user(item: dict) -> None:
    """Validate one add_user_properties item; ``id`` in any casing is reserved by Heap."""
    _check_unknown(item, _USER_FIELDS)
    _check_string(item, "identity", MAX_IDENTITY_CHARS, required=True)
    if "properties" not in item:
        raise _ItemError("properties", "required")
    _check_properties(item["properties"], reserve_id=True)


def _validate_account(item: dict) -> None:
    """Validate one add_account_properties item."""
    _check_unknown(item, _ACCOUNT_FIELDS)
    _check_string(item, "account_id", None, required=True)
    if "properties" not in item:
        raise _ItemError("properties", "required")
    _check_properties(item["properties"], reserve_id=False)


def _validate_identify(item: dict) -> None:
    """Validate an identify body without its app_id: one identity and one user_id."""
    _check_unknown(item, _IDENTIFY_FIELDS)
    _check_string(item, "identity", MAX_IDENTITY_CHARS, required=True)
    if "user_id" not in item:
        raise _ItemError("user_id", "required")
    _check_user_id(item["user_id"])
    if "timestamp" in item:
        _check_timestamp(item["timestamp"])


def _validate_deletion_user(item: dict) -> None:
    """Validate one user to delete: exactly one of identity and user_id."""
    _check_unknown(item, _DELETION_USER_FIELDS)
    if "identity" in item:
        if "user_id" in item:
            raise _ItemError("identity", "identity and user_id cannot both be provided")
        _check_string(item, "identity", MAX_IDENTITY_CHARS, required=True)
    elif "user_id" in item:
        _check_user_id_number(item["user_id"])
    else:
        raise _ItemError("identity", "identity or user_id is required")


_VALIDATORS = {
    "track": _validate_track,
    "add_user_properties": _validate_user,
    "add_account_properties": _validate_account,
    "identify": _validate_identify,
}


def _check_app_id(body: dict) -> str | int:
    """app_id is the only credential; Heap's account OpenAPI types it as an integer."""
    if "app_id" not in body:
        raise ValidationError("app_id: required")
    app_id = body["app_id"]
    if type(app_id) is int:
        return app_id
    if type(app_id) is not str or not app_id:
        raise ValidationError("app_id: must be a non-empty string or an integer")
    return app_id


def _check_array_keys(api_type: str, body: dict) -> str:
    """Refuse another endpoint's array key: it means the client hit the wrong URL."""
    array_key = ARRAY_KEYS[api_type]
    for other in ARRAY_KEYS.values():
        if other != array_key and other in body:
            raise ValidationError(
                f"{other}: wrong array key for /api/{api_type} (expected {array_key})"
            )
    return array_key


def _validate_bulk(api_type: str, array_key: str, body: dict) -> list[dict]:
    """Validate a bulk body; one bad item rejects the whole request."""
    for key in body:
        if key != "app_id" and key != array_key:
            raise ValidationError(f"{_name(key)}: unexpected top-level key in bulk form")
    return _validate_items(array_key, body[array_key], _VALIDATORS[api_type], MAX_BULK_ITEMS)


def _validate_items(
    array_key: str, items: Any, validate: Callable[[dict], None], max_items: int
) -> list[dict]:
    """Validate an array of 1 to ``max_items`` items; the first bad item rejects them all."""
    if type(items) is not list:
        raise ValidationError(f"{array_key}: must be an array")
    if not items:
        raise ValidationError(f"{array_key}: must contain at least 1 item")
    if len(items) > max_items:
        raise ValidationError(f"{array_key}: more than {max_items} items")
    for index, item in enumerate(items):
        if type(item) is not dict:
            raise ValidationError(f"{array_key}[{index}]: must be an object")
        try:
            validate(item)
        except _ItemError as exc:
            raise ValidationError(f"{array_key}[{index}].{exc.path}: {exc.rule}") from None
    return items


def _validate_single(api_type: str, body: dict) -> list[dict]:
    """Validate a single-form body: everything except app_id is the one item."""
    item = {key: value for key, value in body.items() if key != "app_id"}
    try:
        _VALIDATORS[api_type](item)
    except _ItemError as exc:
        raise ValidationError(f"{exc.path}: {exc.rule}") from None
    return [item]


def validate_body(api_type: str, body: Any) -> tuple[str | int, str, list[dict]]:
    """Validate a parsed request body; return ``(app_id, form, items)`` or raise."""
    if type(body) is not dict:
        raise ValidationError("body: must be a JSON object")
    array_key = _check_array_keys(api_type, body)
    app_id = _check_app_id(body)
    if array_key in body:
        return app_id, "bulk", _validate_bulk(api_type, array_key, body)
    return app_id, "single", _validate_single(api_type, body)


def validate_identify_body(body: Any) -> tuple[str | int, dict]:
    """Validate an identify body; return ``(app_id, item)`` or raise. There is no bulk form."""
    if type(body) is not dict:
        raise ValidationError("body: must be a JSON object (identify has no bulk form)")
    for key, value in body.items():
        if type(value) is list and key != "app_id" and key not in _IDENTIFY_FIELDS:
            raise ValidationError(f"{_name(key)}: identify has no bulk form")
    app_id = _check_app_id(body)
    [item] = _validate_single("identify", body)
    return app_id, item


def _validated_items(endpoint: str, body: Any) -> tuple[str | int, list[dict]]:
    """``(app_id, items)`` of an ingestion or identify body (identify has one item)."""
    if endpoint == "identify":
        app_id, item = validate_identify_body(body)
        return app_id, [item]
    app_id, _form, items = validate_body(endpoint, body)
    return app_id, items


def validate_deletion_body(body: Any) -> list[dict]:
    """Validate a user deletion body; return its users or raise.

    Only ``users`` is allowed: the bearer token, not the body, names the app.
    """
    if type(body) is not dict:
        raise ValidationError("body: must be a JSON object")
    for key in body:
        if key != "users":
            raise ValidationError(f"{_name(key)}: unexpected top-level key (only users)")
    if "users" not in body:
        raise ValidationError("users: required")
    return _validate_items("users", body["users"], _validate_deletion_user, MAX_DELETION_USERS)


def _shape(endpoint: str, body: Any) -> tuple[str | None, int]:
    """Describe a body for the request log, even when it is invalid.

    Identify is always single; a user deletion is bulk when it carries a ``users`` array; an
    auth_token or deletion_status request has no form.
    """
    if endpoint == "identify":
        return "single", 1
    if type(body) is not dict:
        return None, 0
    if endpoint == "user_deletion":
        users = body.get("users")
        return ("bulk", len(users)) if type(users) is list else (None, 0)
    if endpoint not in ARRAY_KEYS:
        return None, 0
    items = body.get(ARRAY_KEYS[endpoint])
    if items is not None:
        return "bulk", len(items) if type(items) is list else 0
    return "single", 1


# --------------------------------------------------------------------------------------------
# Faults and rate limiting
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Faults:
    """Fault settings; frozen so a request works on one consistent snapshot."""

    latency_ms: float = 0
    error_500_rate: float = 0.0
    error_429_rate: float = 0.0
    retry_after: float | list[float] | str | None = None
    drop_rate: float = 0.0
    drop_after_store: bool = False
    fixed_status: int | None = None
    fixed_message: str | None = None
    fixed_reason: str | None = None
    rate_limit: dict[str, Any] | None = None
    reject_marker: str | None = None
    echo_refused: str | None = None
    echo_cut: int | None = None
    seed: int | None = None
    endpoints: tuple[str, ...] | None = None  # the endpoints the other settings apply to

    def applies_to(self, endpoint: str) -> bool:
        """Whether these faults apply to ``endpoint`` (None scopes them to every endpoint)."""
        return self.endpoints is None or endpoint in self.endpoints

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly copy for the control endpoint."""
        return dataclasses.asdict(self)


FAULT_NAMES = frozenset(field.name for field in dataclasses.fields(Faults))


def _is_number(value: Any) -> bool:
    """True for int/float but not bool, which Python treats as an int."""
    return type(value) in (int, float) and math.isfinite(value)


def _check_rate(name: str, value: Any) -> None:
    """Rates are probabilities."""
    if not _is_number(value) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number from 0 to 1")


def _check_retry_after(value: Any) -> None:
    """retry_after: None, seconds, a non-empty list of seconds, or "http-date"."""
    if value is None or value == "http-date":
        return
    values = value if isinstance(value, list) else [value]
    if not values or not all(_is_number(v) and v >= 0 for v in values):
        raise ValueError('retry_after must be seconds, a list of seconds, "http-date" or None')


def _normalise_rate_limit(value: Any) -> dict[str, Any] | None:
    """Validate ``{"events", "window_seconds", "per_identity"}`` and fill the default."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"events", "window_seconds", "per_identity"}:
        raise ValueError("rate_limit must be {events, window_seconds, per_identity}")
    events = value.get("events")
    window = value.get("window_seconds")
    per_identity = value.get("per_identity")
    if type(events) is not int or events < 1:
        raise ValueError("rate_limit.events must be a positive integer")
    if not _is_number(window) or window <= 0:
        raise ValueError("rate_limit.window_seconds must be a positive number")
    if per_identity is not None and (type(per_identity) is not int or per_identity < 1):
        raise ValueError("rate_limit.per_identity must be a positive integer or None")
    return {"events": events, "window_seconds": window, "per_identity": per_identity}


def _check_fixed(fixed_status: Any, fixed_message: Any, fixed_reason: Any) -> None:
    """fixed_status must be a real HTTP status code; fixed_reason must fit on the status line."""
    if fixed_status is not None and (
        type(fixed_status) is not int or not 100 <= fixed_status <= 599
    ):
        raise ValueError("fixed_status must be an HTTP status code or None")
    if fixed_message is not None and not isinstance(fixed_message, str):
        raise ValueError("fixed_message must be a string or None")
    if fixed_reason is not None and not (
        isinstance(fixed_reason, str)
        and fixed_reason.isprintable()
        and fixed_reason.encode("latin-1", "replace").decode("latin-1") == fixed_reason
    ):
        raise ValueError("fixed_reason must be printable Latin-1 text or None")


def _check_echo(echo_refused: Any, echo_cut: Any) -> None:
    """echo_refused names one of ECHO_FORMS; echo_cut is a length."""
    if echo_refused is not None and echo_refused not in ECHO_FORMS:
        raise ValueError(f"echo_refused must be one of {sorted(ECHO_FORMS)} or None")
    if echo_cut is not None and (type(echo_cut) is not int or echo_cut < 0):
        raise ValueError("echo_cut must be a non-negative integer or None")


def _normalise_endpoints(value: Any) -> tuple[str, ...] | None:
    """endpoints: None (every endpoint) or a non-empty list of names from ENDPOINTS."""
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not value or not set(value) <= set(ENDPOINTS):
        raise ValueError(f"endpoints must be None or a non-empty list of {list(ENDPOINTS)}")
    return tuple(value)


def merge_faults(current: Faults, **changes: Any) -> Faults:
    """Return ``current`` updated with ``changes`` after validating every setting."""
    unknown = set(changes) - FAULT_NAMES
    if unknown:
        raise ValueError(f"unknown fault settings: {sorted(unknown)}")
    merged = dataclasses.replace(current, **changes)
    for name in ("error_500_rate", "error_429_rate", "drop_rate"):
        _check_rate(name, getattr(merged, name))
    if not _is_number(merged.latency_ms) or merged.latency_ms < 0:
        raise ValueError("latency_ms must be a non-negative number")
    if type(merged.drop_after_store) is not bool:
        raise ValueError("drop_after_store must be a boolean")
    if merged.seed is not None and type(merged.seed) is not int:
        raise ValueError("seed must be an integer or None")
    _check_retry_after(merged.retry_after)
    if merged.reject_marker is not None and (
        not isinstance(merged.reject_marker, str) or not merged.reject_marker
    ):
        raise ValueError("reject_marker must be a non-empty string or None")
    _check_fixed(merged.fixed_status, merged.fixed_message, merged.fixed_reason)
    _check_echo(merged.echo_refused, merged.echo_cut)
    return dataclasses.replace(
        merged,
        rate_limit=_normalise_rate_limit(merged.rate_limit),
        endpoints=_normalise_endpoints(merged.endpoints),
    )


ANSWER_ACTIONS = ("pass", "status", "drop", "drop_after_store", "hang", "expire_token")
"""What a scripted answer does to one request (see the module docstring)."""


def normalise_answer(endpoint: str, answer: Any) -> tuple[dict[str, Any], int]:
    """Validate one scripted answer for ``endpoint``; return it without ``times``, and ``times``.

    An answer has exactly one action; flags take ``true``; ``status`` is an error status and
    alone may carry ``message`` and ``retry_after``.
    """
    if endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint must be one of {list(ENDPOINTS)}")
    if not isinstance(answer, dict):
        raise ValueError("an answer must be an object")
    answer = dict(answer)
    times = answer.pop("times", 1)
    if type(times) is not int or times < 1:
        raise ValueError("times must be a positive integer")
    actions = [name for name in ANSWER_ACTIONS if name in answer]
    if len(actions) != 1:
        raise ValueError(f"an answer needs exactly one of {list(ANSWER_ACTIONS)}")
    [action] = actions
    extras = set(answer) - {action} - ({"message", "retry_after"} if action == "status" else set())
    if extras:
        raise ValueError(f"unknown answer fields: {sorted(extras)}")
    if action == "status":
        status = answer["status"]
        if type(status) is not int or not 400 <= status <= 599:
            raise ValueError("status must be an error status from 400 to 599")
        if not isinstance(answer.get("message", ""), str):
            raise ValueError("message must be a string")
        _check_retry_after(answer.get("retry_after"))
    elif answer[action] is not True:
        raise ValueError(f"{action} must be true")
    if action == "expire_token" and endpoint not in BEARER_ENDPOINTS:
        raise ValueError(f"expire_token applies only to {sorted(BEARER_ENDPOINTS)}")
    return answer, times


class _Window:
    """Items counted in a rolling time window.

    Entries are ``(timestamp, count)`` per request, not per item, so a million-item run keeps
    only a few thousand entries.
    """

    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        self.entries: deque[tuple[float, int]] = deque()
        self.total = 0

    def prune(self, now: float, window: float) -> None:
        """Forget entries that left the window."""
        entries = self.entries
        while entries and entries[0][0] <= now - window:
            self.total -= entries.popleft()[1]

    def wait_for(self, count: int, limit: int, now: float, window: float) -> float:
        """Seconds until ``count`` more items fit (0 if they fit now)."""
        self.prune(now, window)
        excess = self.total + count - limit
        if excess <= 0:
            return 0.0
        if count > limit:
            return window  # can never fit; tell the client to back off a whole window
        for stamp, size in self.entries:
            excess -= size
            if excess <= 0:
                return stamp + window - now
        return window

    def add(self, count: int, now: float) -> None:
        """Record ``count`` accepted items."""
        self.entries.append((now, count))
        self.total += count


def _identity_counts(items: list[dict]) -> dict[str, int]:
    """Count track items per identity (user_id counts as its own identity)."""
    counts: dict[str, int] = {}
    for item in items:
        identity = item.get("identity")
        key = "i:" + identity if identity is not None else "u:" + item["user_id"]
        counts[key] = counts.get(key, 0) + 1
    return counts


class _RateLimiter:
    """Rolling-window limiter over accepted items per endpoint and app_id (and identity)."""

    def __init__(self) -> None:
        self._windows: dict[tuple, _Window] = {}

    def _window(self, key: tuple) -> _Window:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window()
        return window

    def admit(
        self, config: dict[str, Any], api_type: str, app_id: Any, items: list[dict], now: float
    ) -> float:
        """Record the items and return 0, or return the seconds to wait without recording."""
        span = config["window_seconds"]
        base = (api_type, str(app_id))
        app_window = self._window(base)
        wait = app_window.wait_for(len(items), config["events"], now, span)
        per_identity = config["per_identity"]
        counts = _identity_counts(items) if per_identity and api_type == "track" else {}
        for identity, count in counts.items():
            window = self._window((*base, identity))
            wait = max(wait, window.wait_for(count, per_identity, now, span))
        if wait > 0:
            return wait
        app_window.add(len(items), now)
        for identity, count in counts.items():
            self._windows[(*base, identity)].add(count, now)
        return 0.0


# --------------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Reply:
    """What the handler should send; ``drop`` means close the connection without answering."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False
    counter: str | None = None  # extra counter to bump (injected_500, rate_limited_429, ...)
    reason: str | None = None  # the status line's reason phrase; None for the standard one


@dataclasses.dataclass(slots=True)
class _Roll:
    """Random fault decisions for one request, drawn under the lock for reproducibility."""

    drop: bool
    error_500: bool
    error_429: bool
    retry_after: Any


_DROP = _Reply(status=0, drop=True)
_NO_FAULTS = Faults()
_NO_ROLL = _Roll(False, False, False, None)


@dataclasses.dataclass(slots=True, frozen=True)
class _Request:
    """One HTTP request as the sandbox sees it; ``headers`` looks names up case-insensitively."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    raw: bytes

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")


def _json_reply(status: int, obj: Any, **kwargs: Any) -> _Reply:
    """A JSON reply."""
    return _Reply(status=status, body=_dumps(obj), **kwargs)


def _api_error(endpoint: str, status: int, message: str, **kwargs: Any) -> _Reply:
    """An error in the endpoint's own style: text for accounts, ``{"err": {"message"}}`` for the
    User Deletion API, ``{"message"}`` elsewhere."""
    if endpoint == TEXT_API:
        return _Reply(status, message.encode(), "text/plain; charset=utf-8", **kwargs)
    if endpoint in ERR_ENDPOINTS:
        return _json_reply(status, {"err": {"message": message}}, **kwargs)
    return _json_reply(status, {"message": message}, **kwargs)


def _unauthorized(endpoint: str, message: str) -> _Reply:
    """A 401 from the User Deletion API's credential checks."""
    scheme = "Basic" if endpoint == "auth_token" else "Bearer"
    return _api_error(
        endpoint,
        401,
        message,
        headers=(("WWW-Authenticate", f'{scheme} realm="heap"'),),
        counter="auth_refused_401",
    )


def _api_ok(api_type: str) -> _Reply:
    """Heap's documented success bodies."""
    if api_type == TEXT_API:
        return _Reply(200, b"OK", "text/plain; charset=utf-8")
    return _Reply(200, b"{}", "application/json")


def _retry_after_header(value: Any) -> tuple[tuple[str, str], ...]:
    """Format a Retry-After header (delta seconds or HTTP-date), or none."""
    if value is None:
        return ()
    if value == "http-date":
        return (("Retry-After", email.utils.formatdate(math.ceil(time.time() + 1), usegmt=True)),)
    text = str(int(value)) if float(value).is_integer() else str(value)
    return (("Retry-After", text),)


def _reason(status: int) -> str:
    """The standard reason phrase, used as the default fixed_message."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def _is_json(content_type: str | None) -> bool:
    """Heap requires ``Content-Type: application/json`` (parameters such as charset allowed)."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


_UNPARSEABLE = object()


def _parse(raw: bytes) -> Any:
    """Parse JSON, returning a sentinel on failure so faults can still be logged."""
    try:
        return _loads(raw)
    except ValueError:
        return _UNPARSEABLE


def _unreadable(endpoint: str, request: _Request, body: Any) -> _Reply | None:
    """The 400 for a body that is not declared or not parsed as JSON, or None."""
    if not _is_json(request.content_type):
        return _api_error(endpoint, 400, "Content-Type: must be application/json")
    if body is _UNPARSEABLE:
        return _api_error(endpoint, 400, "body: invalid JSON")
    return None


def _rate_limited(endpoint: str, wait: float) -> _Reply:
    """The rate limiter's 429, with the whole seconds to wait."""
    headers = (("Retry-After", str(max(1, math.ceil(wait)))),)
    return _api_error(
        endpoint, 429, "rate limit exceeded", headers=headers, counter="rate_limited_429"
    )


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(app_id, api_key)`` from an HTTP Basic Authorization header, or None if malformed."""
    scheme, _, encoded = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    app_id, colon, api_key = decoded.partition(":")
    if not colon or not app_id or not api_key:
        return None
    return app_id, api_key


def _bearer_token(header: str | None) -> str | None:
    """The token of a ``Bearer <token>`` Authorization header, or None."""
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _endpoint_of(path: str) -> str | None:
    """The endpoint a path names, or None (a status path needs a request id)."""
    endpoint = ENDPOINT_PATHS.get(path)
    if endpoint is None and path.startswith(DELETION_STATUS_PREFIX):
        request_id = path.removeprefix(DELETION_STATUS_PREFIX)
        if request_id and "/" not in request_id:
            return "deletion_status"
    return endpoint


def _control_body(request: _Request, allowed: frozenset[str] | set[str] | None = None) -> dict:
    """A control request's JSON object (an empty body is ``{}``), with only ``allowed`` keys."""
    if not request.raw.strip():
        return {}
    body = _parse(request.raw)
    if type(body) is not dict:
        raise ValueError("body: must be a JSON object")
    unknown = set(body) - allowed if allowed is not None else set()
    if unknown:
        raise ValueError(f"body: unknown keys {sorted(unknown)}")
    return body


def _marked_item(
    api_type: str, body: dict, items: list[dict], marker: str
) -> tuple[str, dict] | None:
    """The `reject_marker` fault: Heap refusing a valid-looking item for a reason of its own
    (undocumented rules exist). Returns the item's location and the item."""
    array_key = "users" if api_type == "user_deletion" else ARRAY_KEYS.get(api_type)
    bulk_key = array_key if array_key in body else None
    needle = marker.encode()
    for index, item in enumerate(items):
        if needle in _dumps(item):
            return (f"{bulk_key}[{index}]" if bulk_key else "body"), item
    return None


def _refusal(api_type: str, location: str, item: dict, faults: Faults) -> _Reply:
    """The 400 for a marked item: it locates the item and, only when `echo_refused` is set,
    quotes it in that form, cut to `echo_cut` characters."""
    message = f"{location}: refused by the sandbox's reject_marker rule"
    if faults.echo_refused is None:
        return _api_error(api_type, 400, message)
    echo = ECHO_FORMS[faults.echo_refused](item)
    if faults.echo_cut is not None:
        echo = echo[: faults.echo_cut]
    message = f"{message}: {echo}"
    if faults.echo_refused == "text":
        return _Reply(400, message.encode(), "text/plain; charset=utf-8")
    return _api_error(api_type, 400, message)


def _refused(endpoint: str, body: Any, items: list[dict], faults: Faults) -> _Reply | None:
    """The reject_marker fault's 400 for the first marked item, or None."""
    if faults.reject_marker is None:
        return None
    refused = _marked_item(endpoint, body, items, faults.reject_marker)
    return None if refused is None else _refusal(endpoint, *refused, faults)


def _new_counters() -> dict[str, int]:
    """Counters present from the start so clients can read them without defaults."""
    names = (
        "requests",
        "items_accepted",
        "dropped",
        "injected_500",
        "injected_429",
        "rate_limited_429",
        "duplicates_ignored",
        "rejected_400",
        "auth_refused_401",
        "tokens_issued",
        "identify_applied",
        "identify_repeated",
        "identify_ignored_identity_taken",
        "identify_ignored_user_id_limit",
        "deletion_requests",
        "deletion_users",
        "scripted",
        "hung",
        *(f"requests_{endpoint}" for endpoint in ENDPOINTS),
    )
    return dict.fromkeys(names, 0)


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, asks the sandbox what to answer, and sends it."""

    protocol_version = "HTTP/1.1"  # keep-alive, so every reply carries Content-Length
    disable_nagle_algorithm = True  # avoid 40 ms delayed-ACK stalls between header and body
    server: _SandboxServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request stderr logging; benchmarks send a million items."""

    def do_POST(self) -> None:
        """Handle POST (the only method the API accepts)."""
        self._dispatch()

    do_GET = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_POST

    def _read_body(self) -> bytes | None:
        """Read the whole body so keep-alive stays in sync; None when already answered."""
        length = self.headers.get("Content-Length")
        if length is None:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                self._send(_json_reply(411, {"message": "Content-Length: required"}))
                return None
            return b""
        try:
            size = int(length)
            if size < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self._send(_json_reply(400, {"message": "Content-Length: invalid"}))
            return None
        return self.rfile.read(size)

    def _dispatch(self) -> None:
        raw = self._read_body()
        if raw is None:
            return
        path, _, query = self.path.partition("?")
        reply = self.server.sandbox._route(_Request(self.command, path, query, self.headers, raw))
        if reply.drop:
            self.close_connection = True  # the server then closes the socket unanswered
            return
        self._send(reply)

    def _send(self, reply: _Reply) -> None:
        self.send_response(reply.status, reply.reason)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)


class _SandboxServer(ThreadingHTTPServer):
    """Threaded server that tracks open connections so ``stop()`` can cut keep-alive clients."""

    daemon_threads = True
    request_queue_size = 256  # concurrent benchmark clients should not get refused

    def __init__(self, port: int, sandbox: HeapSandbox) -> None:
        self.sandbox = sandbox
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((HOST, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down idle keep-alive sockets so their handler threads end."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# --------------------------------------------------------------------------------------------
# Identify, auth and script state (each guarded by the sandbox's lock)
# --------------------------------------------------------------------------------------------


class _Identities:
    """The identify pairs Heap would apply, under its two silent ignore rules."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self._owner: dict[tuple[str, str], str] = {}  # (app_id, user_id) -> identity
        self._linked: dict[tuple[str, str], list[float]] = {}  # (app_id, identity) -> clock times

    def apply(self, app: str, identity: str, user_id: str, now: float) -> str:
        """Apply one pair at sandbox-clock time ``now``; return the outcome.

        A user_id keeps its first identity; an identity takes at most 10 new user_ids in any
        30 days. A pair already applied is ``repeated`` and changes nothing.
        """
        owner = self._owner.get((app, user_id))
        if owner is not None:
            return "repeated" if owner == identity else "ignored_identity_taken"
        linked = self._linked.setdefault((app, identity), [])
        recent = sum(1 for at in linked if now - at < IDENTIFY_WINDOW_SECONDS)
        if recent >= MAX_USER_IDS_PER_IDENTITY:
            return "ignored_user_id_limit"
        self._owner[(app, user_id)] = identity
        linked.append(now)
        return "applied"

    def applied(self) -> dict[str, dict[str, str]]:
        """``{app_id: {user_id: identity}}`` for every pair applied."""
        result: dict[str, dict[str, str]] = {}
        for (app, user_id), identity in self._owner.items():
            result.setdefault(app, {})[user_id] = identity
        return result


@dataclasses.dataclass(slots=True)
class _Token:
    """An issued access token (its text is the key of ``_Auth._tokens``)."""

    number: int  # 1 for the first token issued since the last reset
    app_id: str
    issued_at: float
    expires_at: float

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "number": self.number,
            "app_id": self.app_id,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "valid": now < self.expires_at,
        }


def normalise_api_keys(value: Any) -> dict[str, tuple[str, ...]]:
    """Validate ``{app_id: [api_key, ...]}``; an integer app_id is taken as its string."""
    if not isinstance(value, dict):
        raise ValueError("api_keys must map each app_id to a list of api keys")
    keys_by_app: dict[str, tuple[str, ...]] = {}
    for app_id, keys in value.items():
        app = str(app_id) if type(app_id) is int else app_id
        if type(app) is not str or not app or ":" in app:
            raise ValueError("api_keys: an app_id must be a non-empty string without ':'")
        if not isinstance(keys, list | tuple) or not all(type(k) is str and k for k in keys):
            raise ValueError("api_keys: each app_id needs a list of non-empty strings")
        keys_by_app[app] = tuple(keys)
    return keys_by_app


def _check_lifetime(value: Any) -> float:
    """A token lifetime is a positive number of seconds."""
    if not _is_number(value) or value <= 0:
        raise ValueError("token_lifetime_seconds must be a positive number")
    return float(value)


class _Auth:
    """Valid api keys per app_id, and the tokens issued, on the sandbox clock."""

    def __init__(self, api_keys: dict[str, tuple[str, ...]], lifetime: float) -> None:
        self.api_keys = api_keys
        self.lifetime = lifetime
        self._tokens: dict[str, _Token] = {}

    def issue(self, app_id: str, api_key: str, now: float) -> str | None:
        """A new access token's text for valid credentials, or None."""
        if api_key not in self.api_keys.get(app_id, ()):
            return None
        text = secrets.token_urlsafe(32)
        self._tokens[text] = _Token(len(self._tokens) + 1, app_id, now, now + self.lifetime)
        return text

    def check(self, presented: str, now: float) -> tuple[_Token | None, str]:
        """The valid token presented, or None and why it is refused."""
        token = self._tokens.get(presented)
        if token is None:
            return None, "Unauthorized: unknown access token"
        if now >= token.expires_at:
            return None, "Unauthorized: the access token has expired"
        return token, ""

    def expire(self, presented: str | None, now: float) -> None:
        """Expire one token now (nothing if it is unknown)."""
        token = self._tokens.get(presented or "")
        if token is not None:
            token.expires_at = min(token.expires_at, now)

    def expire_all(self, now: float) -> int:
        """Expire every token now; return how many were still valid."""
        valid = [token for token in self._tokens.values() if now < token.expires_at]
        for token in valid:
            token.expires_at = now
        return len(valid)

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "api_keys": {app: list(keys) for app, keys in self.api_keys.items()},
            "token_lifetime_seconds": self.lifetime,
            "tokens": [token.as_dict(now) for token in self._tokens.values()],
        }


def _action_of(answer: dict[str, Any]) -> str:
    """The action of a normalised scripted answer."""
    return next(name for name in ANSWER_ACTIONS if name in answer)


class _Script:
    """Answers queued per endpoint, and the gate that hung requests wait on."""

    def __init__(self) -> None:
        self.queues: dict[str, deque[dict[str, Any]]] = {}
        self.gate = threading.Event()
        self.hanging = 0

    def add(self, endpoint: str, answers: list[tuple[dict[str, Any], int]]) -> None:
        queue = self.queues.setdefault(endpoint, deque())
        for answer, times in answers:
            queue.extend([answer] * times)

    def next(self, endpoint: str) -> dict[str, Any] | None:
        """Consume the endpoint's next answer, or None when none is queued."""
        queue = self.queues.get(endpoint)
        return queue.popleft() if queue else None

    def release(self) -> int:
        """Let every hung request go; return how many were hanging."""
        released = self.hanging
        self.gate.set()
        self.gate = threading.Event()
        return released

    def as_dict(self) -> dict[str, Any]:
        queued = {name: list(queue) for name, queue in self.queues.items() if queue}
        return {"queued": queued, "hanging": self.hanging}


# --------------------------------------------------------------------------------------------
# The sandbox
# --------------------------------------------------------------------------------------------

_REQUEST_COUNTERS = {endpoint: f"requests_{endpoint}" for endpoint in ENDPOINTS}
_REPLACING_ACTIONS = frozenset({"status", "drop", "hang"})
"""Scripted actions that answer instead of the endpoint (no fault, no processing)."""


class HeapSandbox:
    """A Heap-compatible server on 127.0.0.1 with in-process accessors and fault injection.

    ``faults``, ``api_keys`` and ``token_lifetime_seconds`` given to the constructor are the
    baseline that ``reset()`` restores (faults all off and no api key by default), so a
    CLI-configured rate limit survives a reset between benchmark runs.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        record_bodies: bool = True,
        store_items: bool = True,
        api_keys: dict[str | int, list[str]] | None = None,
        token_lifetime_seconds: float = TOKEN_LIFETIME_SECONDS,
        **faults: Any,
    ) -> None:
        """`store_items=False` counts accepted items without keeping them (a 1M-item benchmark
        would otherwise hold about 1 GB); idempotency keys are still remembered."""
        self._port = port
        self._record_bodies = record_bodies
        self._store_items = store_items
        self._baseline = merge_faults(Faults(), **faults)
        self._baseline_keys = normalise_api_keys(api_keys or {})
        self._baseline_lifetime = _check_lifetime(token_lifetime_seconds)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified when a request starts to hang
        self._server: _SandboxServer | None = None
        self._thread: threading.Thread | None = None
        self._script = _Script()
        self._reset_locked()

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in a background thread; returns self for chaining."""
        if self._server is not None:
            return self
        self._server = _SandboxServer(self._port, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="heap-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket and open connections."""
        server, self._server = self._server, None
        if server is None:
            return
        self.release()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (useful when started with port 0)."""
        if self._server is None:
            raise RuntimeError("sandbox is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{HOST}:{self.port}"

    # ---- accessors ---------------------------------------------------------------------------

    def accepted(self, api_type: str | None = None) -> list[dict]:
        """Accepted items (shared dicts: do not mutate); all types concatenated when None."""
        with self._lock:
            if api_type is None:
                return [item for name in API_TYPES for item in self._accepted[name]]
            if api_type not in self._accepted:
                raise ValueError(f"api_type must be one of {API_TYPES}")
            return list(self._accepted[api_type])

    def events(self, *, user_id: str | None = None, identity: str | None = None) -> list[dict]:
        """Accepted track items of one user, named by exactly one of ``user_id`` and
        ``identity`` (as sent: identify pairs do not rewrite them)."""
        if (user_id is None) == (identity is None):
            raise ValueError("give exactly one of user_id and identity")
        field, value = ("user_id", user_id) if user_id is not None else ("identity", identity)
        return [item for item in self.accepted("track") if item.get(field) == value]

    def identify_calls(self) -> list[dict]:
        """One record per accepted identify request, in order, with its ``outcome``."""
        with self._lock:
            return list(self._identities.calls)

    def identities(self) -> dict[str, dict[str, str]]:
        """The applied identify pairs: ``{app_id (as a string): {user_id: identity}}``."""
        with self._lock:
            return self._identities.applied()

    def deletion_requests(self) -> list[dict]:
        """One record per accepted user deletion request, in order."""
        with self._lock:
            return list(self._deletions)

    def requests_log(self) -> list[dict]:
        """One entry per non-control request, in completion order."""
        with self._lock:
            return list(self._log)

    def counters(self) -> dict[str, int]:
        """A snapshot of the counters."""
        with self._lock:
            return dict(self._counters)

    def faults(self) -> dict[str, Any]:
        """The current fault settings."""
        with self._lock:
            return self._faults.as_dict()

    def set_faults(self, **changes: Any) -> None:
        """Update some fault settings (others keep their value); raises ValueError if invalid."""
        with self._lock:
            self._faults = merge_faults(self._faults, **changes)
            if "seed" in changes:
                self._rng = random.Random(self._faults.seed)

    # ---- auth and clock ----------------------------------------------------------------------

    def auth(self) -> dict[str, Any]:
        """Api keys, token lifetime and the tokens issued (without their text)."""
        with self._lock:
            return self._auth.as_dict(self._now())

    def set_auth(
        self,
        *,
        api_keys: dict[str | int, list[str]] | None = None,
        token_lifetime_seconds: float | None = None,
    ) -> dict[str, Any]:
        """Replace the api keys and/or the lifetime of tokens issued from now on."""
        keys = normalise_api_keys(api_keys) if api_keys is not None else None
        lifetime = None
        if token_lifetime_seconds is not None:
            lifetime = _check_lifetime(token_lifetime_seconds)
        with self._lock:
            if keys is not None:
                self._auth.api_keys = keys
            if lifetime is not None:
                self._auth.lifetime = lifetime
        return self.auth()

    def expire_tokens(self) -> int:
        """Expire every token issued so far (as if 5 minutes had passed); return how many."""
        with self._lock:
            return self._auth.expire_all(self._now())

    def clock(self) -> dict[str, float]:
        """The sandbox clock: wall time plus the offset tests have advanced it by."""
        with self._lock:
            return {"offset_seconds": self._clock_offset, "now": self._now()}

    def advance_clock(self, seconds: float) -> dict[str, float]:
        """Move the sandbox clock forward (token expiry, the identify month)."""
        if not _is_number(seconds) or seconds < 0:
            raise ValueError("advance_seconds must be a non-negative number")
        with self._lock:
            self._clock_offset += seconds
        return self.clock()

    def _now(self) -> float:
        return time.time() + self._clock_offset

    # ---- script ------------------------------------------------------------------------------

    def script(self, endpoint: str, *answers: dict[str, Any]) -> dict[str, Any]:
        """Queue answers for ``endpoint``'s next requests (see the module docstring)."""
        if not answers:
            raise ValueError("answers must hold at least one answer")
        normalised = [normalise_answer(endpoint, answer) for answer in answers]
        with self._lock:
            self._script.add(endpoint, normalised)
        return self.scripted()

    def scripted(self) -> dict[str, Any]:
        """``{"queued": {endpoint: [answer, ...]}, "hanging": n}``."""
        with self._lock:
            return self._script.as_dict()

    def release(self) -> int:
        """Let hung requests go (they are dropped); return how many were hanging."""
        with self._lock:
            return self._script.release()

    def wait_hanging(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Block until ``count`` requests hang (True) or ``timeout`` seconds pass (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._script.hanging >= count, timeout)

    def wait_for_items(self, api_type: str, count: int, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` items of ``api_type`` were accepted (True), or
        ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        while len(self.accepted(api_type)) < count:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def _hang(self) -> None:
        """Hold this request until released (by release(), reset() or stop())."""
        with self._lock:
            script = self._script
            gate = script.gate
            script.hanging += 1
            self._counters["hung"] += 1
            self._changed.notify_all()
        gate.wait()
        with self._lock:
            script.hanging -= 1

    # ---- reset and state ---------------------------------------------------------------------

    def reset(self) -> None:
        """Clear items, log, counters, idempotency keys, limiter, identify pairs, deletions,
        tokens, script and clock offset (hung requests are released); restore the baseline."""
        with self._lock:
            self._reset_locked()

    def _reset_locked(self) -> None:
        self._accepted: dict[str, list[dict]] = {name: [] for name in API_TYPES}
        self._log: list[dict] = []
        self._counters = _new_counters()
        self._faults = self._baseline
        self._rng = random.Random(self._faults.seed)
        self._idempotency: dict[str, set[str]] = {}
        self._limiter = _RateLimiter()
        self._identities = _Identities()
        self._deletions: list[dict] = []
        self._auth = _Auth(self._baseline_keys, self._baseline_lifetime)
        self._clock_offset = 0.0
        self._script.release()
        self._script = _Script()

    def _state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "counters": dict(self._counters),
                "accepted": {name: list(items) for name, items in self._accepted.items()},
                "requests": list(self._log),
            }

    # ---- routing -----------------------------------------------------------------------------

    def _route(self, request: _Request) -> _Reply:
        """Pick the control plane, an API endpoint, or 404/405."""
        path = request.path
        if path.startswith("/_sandbox/"):
            return self._control(request)
        endpoint = _endpoint_of(path)
        if endpoint is None:
            reply = _json_reply(404, {"message": "not found"})
            return self._finish(path, _parse(request.raw), None, reply)
        allowed = "GET" if endpoint == "deletion_status" else "POST"
        if request.method != allowed:
            reply = _json_reply(
                405, {"message": "method not allowed"}, headers=(("Allow", allowed),)
            )
            return self._finish(path, _parse(request.raw), endpoint, reply)
        return self._api(endpoint, request)

    # ---- control plane -----------------------------------------------------------------------

    _CONTROL: dict[str, dict[str, str]] = {
        "/_sandbox/state": {"GET": "_control_state"},
        "/_sandbox/counters": {"GET": "_control_counters"},
        "/_sandbox/faults": {"GET": "_control_faults_get", "POST": "_control_faults"},
        "/_sandbox/reset": {"POST": "_control_reset"},
        "/_sandbox/events": {"GET": "_control_events"},
        "/_sandbox/identify": {"GET": "_control_identify"},
        "/_sandbox/deletions": {"GET": "_control_deletions"},
        "/_sandbox/auth": {"GET": "_control_auth_get", "POST": "_control_auth"},
        "/_sandbox/auth/expire": {"POST": "_control_expire"},
        "/_sandbox/clock": {"GET": "_control_clock_get", "POST": "_control_clock"},
        "/_sandbox/script": {"GET": "_control_script_get", "POST": "_control_script"},
        "/_sandbox/release": {"POST": "_control_release"},
        "/_sandbox/wait_hanging": {"POST": "_control_wait_hanging"},
    }
    """Control path -> method -> handler name; a handler takes the request and returns JSON."""

    def _control(self, request: _Request) -> _Reply:
        """Control endpoints for out-of-process use; never subject to faults."""
        methods = self._CONTROL.get(request.path)
        if methods is None:
            return _json_reply(404, {"message": "not found"})
        handler = methods.get(request.method)
        if handler is None:
            allow = ", ".join(methods)
            return _json_reply(405, {"message": "method not allowed"}, headers=(("Allow", allow),))
        try:
            return _json_reply(200, getattr(self, handler)(request))
        except (ValueError, TypeError) as exc:
            return _json_reply(400, {"message": str(exc)})

    def _control_state(self, request: _Request) -> Any:
        return self._state()

    def _control_counters(self, request: _Request) -> Any:
        return self.counters()

    def _control_faults_get(self, request: _Request) -> Any:
        return self.faults()

    def _control_faults(self, request: _Request) -> Any:
        self.set_faults(**_control_body(request))
        return self.faults()

    def _control_reset(self, request: _Request) -> Any:
        self.reset()
        return {}

    def _control_events(self, request: _Request) -> Any:
        query = urllib.parse.parse_qs(request.query, keep_blank_values=True)
        if len(query) != 1 or not set(query) <= {"user_id", "identity"}:
            raise ValueError("query: give exactly one of user_id and identity")
        [(field, values)] = query.items()
        if len(values) != 1:
            raise ValueError(f"query: {field} given more than once")
        return {"events": self.events(**{field: values[0]})}

    def _control_identify(self, request: _Request) -> Any:
        return {"calls": self.identify_calls(), "applied": self.identities()}

    def _control_deletions(self, request: _Request) -> Any:
        return {"requests": self.deletion_requests()}

    def _control_auth_get(self, request: _Request) -> Any:
        return self.auth()

    def _control_auth(self, request: _Request) -> Any:
        return self.set_auth(**_control_body(request, {"api_keys", "token_lifetime_seconds"}))

    def _control_expire(self, request: _Request) -> Any:
        return {"expired": self.expire_tokens()}

    def _control_clock_get(self, request: _Request) -> Any:
        return self.clock()

    def _control_clock(self, request: _Request) -> Any:
        body = _control_body(request, {"advance_seconds"})
        if "advance_seconds" not in body:
            raise ValueError("advance_seconds: required")
        return self.advance_clock(body["advance_seconds"])

    def _control_script_get(self, request: _Request) -> Any:
        return self.scripted()

    def _control_script(self, request: _Request) -> Any:
        body = _control_body(request, {"endpoint", "answers"})
        answers = body.get("answers")
        if not isinstance(answers, list):
            raise ValueError("answers: must be a list of answers")
        return self.script(body.get("endpoint"), *answers)

    def _control_release(self, request: _Request) -> Any:
        return {"released": self.release()}

    def _control_wait_hanging(self, request: _Request) -> Any:
        body = _control_body(request, {"count", "timeout_seconds"})
        count, timeout = body.get("count", 1), body.get("timeout_seconds", 10)
        if type(count) is not int or count < 1:
            raise ValueError("count must be a positive integer")
        if not _is_number(timeout) or timeout < 0:
            raise ValueError("timeout_seconds must be a non-negative number")
        reached = self.wait_hanging(count, timeout)
        return {"hanging": self.scripted()["hanging"], "reached": reached}

    # ---- API ---------------------------------------------------------------------------------

    def _api(self, endpoint: str, request: _Request) -> _Reply:
        """Handle an API request: a scripted answer first, then the documented fault order."""
        received_at = time.time()
        answer, faults, roll = self._roll(endpoint)
        body = _parse(request.raw)
        action = _action_of(answer) if answer is not None else "pass"
        if action in _REPLACING_ACTIONS:
            reply = self._scripted(endpoint, action, answer)
        else:
            if action == "expire_token":
                with self._lock:
                    self._auth.expire(_bearer_token(request.authorization), self._now())
            reply = self._faulted(endpoint, request, body, faults, roll)
            if action == "drop_after_store" and reply.status < 300:
                reply = _DROP
        return self._finish(request.path, body, endpoint, reply, received_at)

    def _roll(self, endpoint: str) -> tuple[dict[str, Any] | None, Faults, _Roll]:
        """Take the endpoint's next scripted answer, snapshot the faults that apply to it and
        draw this request's random decisions (none when a scripted answer replaces them)."""
        with self._lock:
            answer = self._script.next(endpoint) if self._script.queues else None
            faults = self._faults
            if not faults.applies_to(endpoint) or (
                answer is not None and _action_of(answer) in _REPLACING_ACTIONS
            ):
                return answer, _NO_FAULTS, _NO_ROLL
            rng = self._rng
            drop = faults.drop_rate > 0 and rng.random() < faults.drop_rate
            error_500 = faults.error_500_rate > 0 and rng.random() < faults.error_500_rate
            error_429 = faults.error_429_rate > 0 and rng.random() < faults.error_429_rate
            retry_after = faults.retry_after
            if isinstance(retry_after, list):
                retry_after = rng.choice(retry_after)
        return answer, faults, _Roll(drop, error_500, error_429, retry_after)

    def _scripted(self, endpoint: str, action: str, answer: dict[str, Any]) -> _Reply:
        """The reply of a scripted status, drop or hang."""
        if action == "hang":
            self._hang()
        if action != "status":
            return _Reply(status=0, drop=True, counter="scripted")
        status = answer["status"]
        return _api_error(
            endpoint,
            status,
            answer.get("message") or _reason(status),
            headers=_retry_after_header(answer.get("retry_after")),
            counter="scripted",
        )

    def _faulted(
        self, endpoint: str, request: _Request, body: Any, faults: Faults, roll: _Roll
    ) -> _Reply:
        """Latency, then an injected answer or the endpoint's own (dropped after storing when
        ``drop_after_store`` rolls a drop)."""
        if faults.latency_ms > 0:
            time.sleep(faults.latency_ms / 1000)
        reply = self._injected(endpoint, faults, roll)
        if reply is not None:
            return reply
        reply = self._PROCESSORS[endpoint](self, endpoint, request, body, faults)
        if roll.drop and faults.drop_after_store and reply.status < 300:
            return _DROP
        return reply

    @staticmethod
    def _injected(endpoint: str, faults: Faults, roll: _Roll) -> _Reply | None:
        """Faults that answer before any processing."""
        if faults.fixed_status is not None:
            status = faults.fixed_status
            message = faults.fixed_message or _reason(status)
            return _api_error(endpoint, status, message, reason=faults.fixed_reason)
        if roll.drop and not faults.drop_after_store:
            return _DROP
        if roll.error_500:
            return _api_error(endpoint, 500, "internal server error", counter="injected_500")
        if roll.error_429:
            headers = _retry_after_header(roll.retry_after)
            return _api_error(
                endpoint, 429, "too many requests", headers=headers, counter="injected_429"
            )
        return None

    def _process_items(self, endpoint: str, request: _Request, body: Any, faults: Faults) -> _Reply:
        """Validate, rate-limit and store ingestion items, or apply one identify pair (an
        ignored pair still gets 200, as from Heap)."""
        reply = _unreadable(endpoint, request, body)
        if reply is not None:
            return reply
        try:
            app_id, items = _validated_items(endpoint, body)
        except ValidationError as exc:
            return _api_error(endpoint, 400, str(exc))
        reply = _refused(endpoint, body, items, faults)
        if reply is not None:
            return reply
        store = self._identify if endpoint == "identify" else self._store
        wait = self._admit_and_store(endpoint, app_id, items, faults.rate_limit, store)
        return _rate_limited(endpoint, wait) if wait else _api_ok(endpoint)

    def _process_auth_token(
        self, endpoint: str, request: _Request, body: Any, faults: Faults
    ) -> _Reply:
        """Exchange HTTP Basic ``app_id:api_key`` for an access token (the body is ignored)."""
        credentials = _basic_credentials(request.authorization)
        if credentials is None:
            return _unauthorized(endpoint, "Authorization: HTTP Basic app_id:api_key required")
        with self._lock:
            token = self._auth.issue(*credentials, self._now())
            if token is not None:
                self._counters["tokens_issued"] += 1
        if token is None:
            return _unauthorized(
                endpoint,
                "Unauthorized: wrong api_key for this app_id (a key works only with the Main "
                "Production environment ID)",
            )
        return _json_reply(200, {"access_token": token})

    def _process_bearer(
        self, endpoint: str, request: _Request, body: Any, faults: Faults
    ) -> _Reply:
        """Check the bearer token before anything else, then handle the request."""
        presented = _bearer_token(request.authorization)
        if presented is None:
            return _unauthorized(endpoint, "Authorization: Bearer access token required")
        with self._lock:
            token, problem = self._auth.check(presented, self._now())
        if token is None:
            return _unauthorized(endpoint, problem)
        if endpoint == "deletion_status":
            return self._deletion_status(token, request)
        return self._delete_users(endpoint, token, request, body, faults)

    def _delete_users(
        self, endpoint: str, token: _Token, request: _Request, body: Any, faults: Faults
    ) -> _Reply:
        """Validate and record one deletion request (deletions are not applied)."""
        reply = _unreadable(endpoint, request, body)
        if reply is not None:
            return reply
        try:
            users = validate_deletion_body(body)
        except ValidationError as exc:
            return _api_error(endpoint, 400, str(exc))
        reply = _refused(endpoint, body, users, faults)
        if reply is not None:
            return reply
        request_id = str(uuid.uuid4())
        record = {
            "deletion_request_id": request_id,
            "app_id": token.app_id,
            "users": users,
            "token_number": token.number,
            "received_at": time.time(),
        }
        with self._lock:
            self._deletions.append(record)
            self._counters["deletion_requests"] += 1
            self._counters["deletion_users"] += len(users)
        answer = {
            "deletion_request_id": request_id,
            "deletion_request_location": DELETION_STATUS_PREFIX + request_id,
            "status": "pending",
        }
        return _json_reply(201, answer)

    def _deletion_status(self, token: _Token, request: _Request) -> _Reply:
        """A deletion request of the token's app is reported pending; any other is 404."""
        request_id = request.path.removeprefix(DELETION_STATUS_PREFIX)
        with self._lock:
            known = any(
                record["deletion_request_id"] == request_id and record["app_id"] == token.app_id
                for record in self._deletions
            )
        if not known:
            return _api_error("deletion_status", 404, "deletion request not found")
        return _json_reply(200, {"status": "pending"})

    _PROCESSORS: dict[str, Callable[..., _Reply]] = {
        **dict.fromkeys((*API_TYPES, "identify"), _process_items),
        "auth_token": _process_auth_token,
        **dict.fromkeys(BEARER_ENDPOINTS, _process_bearer),
    }

    def _admit_and_store(
        self,
        endpoint: str,
        app_id: Any,
        items: list[dict],
        rate_limit: dict[str, Any] | None,
        store: Callable[[str, Any, list[dict], float], None],
    ) -> float:
        """Atomically check the limiter and store; returns seconds to wait if refused."""
        with self._lock:
            now = time.time()
            if rate_limit is not None:
                wait = self._limiter.admit(rate_limit, endpoint, app_id, items, now)
                if wait:
                    return wait
            store(endpoint, app_id, items, now)
        return 0.0

    def _identify(self, endpoint: str, app_id: Any, items: list[dict], now: float) -> None:
        """Apply and record one identify pair (the caller holds the lock)."""
        [item] = items
        outcome = self._identities.apply(
            str(app_id), item["identity"], item["user_id"], now + self._clock_offset
        )
        self._identities.calls.append(
            {"app_id": app_id, **item, "outcome": outcome, "received_at": now}
        )
        self._counters[f"identify_{outcome}"] += 1

    def _store(self, api_type: str, app_id: Any, items: list[dict], now: float) -> None:
        """Record items; a repeated track idempotency_key is ignored like Heap does.

        Without recorded bodies the parsed items are annotated in place: no copy, so a
        million-item benchmark allocates (and garbage-collects) half as many dicts.
        """
        bucket = self._accepted[api_type]
        seen = self._idempotency.setdefault(str(app_id), set()) if api_type == "track" else None
        copy = self._record_bodies
        stored = 0
        for item in items:
            if seen is not None:
                key = item.get("idempotency_key")
                if key is not None:
                    if key in seen:
                        self._counters["duplicates_ignored"] += 1
                        continue
                    seen.add(key)
            if not self._store_items:
                stored += 1
                continue
            if copy:
                item = {**item, "_app_id": app_id, "_received_at": now}
            else:
                item["_app_id"] = app_id
                item["_received_at"] = now
            bucket.append(item)
            stored += 1
        self._counters["items_accepted"] += stored

    def _finish(
        self,
        path: str,
        body: Any,
        endpoint: str | None,
        reply: _Reply,
        received_at: float | None = None,
    ) -> _Reply:
        """Count the outcome and append the request-log entry."""
        form, count = _shape(endpoint, body) if endpoint else (None, 0)
        entry: dict[str, Any] = {
            "path": path,
            "form": form,
            "items": count,
            "status": None if reply.drop else reply.status,
            "received_at": received_at if received_at is not None else time.time(),
        }
        if self._record_bodies:
            entry["body"] = None if body is _UNPARSEABLE else body
        with self._lock:
            self._count(reply, endpoint)
            self._log.append(entry)
        return reply

    def _count(self, reply: _Reply, endpoint: str | None) -> None:
        counters = self._counters
        counters["requests"] += 1
        if endpoint is not None:
            counters[_REQUEST_COUNTERS[endpoint]] += 1
        if reply.drop:
            counters["dropped"] += 1
        else:
            name = f"status_{reply.status}"
            counters[name] = counters.get(name, 0) + 1
            if reply.status == 400:
                counters["rejected_400"] += 1
        if reply.counter:
            counters[reply.counter] += 1


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Local Heap-compatible ingestion server.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free)")
    parser.add_argument("--latency-ms", type=float, default=0, help="delay per API request")
    parser.add_argument("--rate-limit-events", type=int, help="items per window per app_id")
    parser.add_argument("--rate-limit-window-seconds", type=float, default=60.0)
    parser.add_argument("--rate-limit-per-identity", type=int, help="track items per identity")
    parser.add_argument("--seed", type=int, help="seed for random fault decisions")
    parser.add_argument("--no-bodies", action="store_true", help="do not keep request bodies")
    parser.add_argument(
        "--count-only", action="store_true", help="count accepted items without keeping them"
    )
    parser.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="APP_ID:KEY",
        help="a valid User Deletion API key for an app_id (repeatable)",
    )
    parser.add_argument("--token-lifetime-seconds", type=float, default=TOKEN_LIFETIME_SECONDS)
    args = parser.parse_args(argv)
    if args.rate_limit_per_identity is not None and args.rate_limit_events is None:
        parser.error("--rate-limit-per-identity needs --rate-limit-events")
    if not all(":" in pair for pair in args.api_key):
        parser.error("--api-key takes APP_ID:KEY")
    return args


def _api_keys_from_args(args: argparse.Namespace) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for pair in args.api_key:
        app_id, _, key = pair.partition(":")
        keys.setdefault(app_id, []).append(key)
    return keys


def _faults_from_args(args: argparse.Namespace) -> dict[str, Any]:
    faults: dict[str, Any] = {"latency_ms": args.latency_ms, "seed": args.seed}
    if args.rate_limit_events is not None:
        faults["rate_limit"] = {
            "events": args.rate_limit_events,
            "window_seconds": args.rate_limit_window_seconds,
            "per_identity": args.rate_limit_per_identity,
        }
    return faults


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; the single stdout line tells a parent process the URL."""
    args = _parse_args(argv)
    try:
        sandbox = HeapSandbox(
            args.port,
            record_bodies=not args.no_bodies,
            store_items=not args.count_only,
            api_keys=_api_keys_from_args(args),
            token_lifetime_seconds=args.token_lifetime_seconds,
            **_faults_from_args(args),
        )
    except ValueError as exc:
        print(f"heap_sandbox: {exc}", file=sys.stderr)
        return 2
    # The process is ours: the accepted items never form cycles, yet with default thresholds
    # the collector rescans them so often that it costs ~45% of a bulk request.
    gc.set_threshold(50_000, 20, 100)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    sandbox.start()
    print(f"listening on {sandbox.url}", flush=True)
    while not stopping.wait(0.2):
        pass
    sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
