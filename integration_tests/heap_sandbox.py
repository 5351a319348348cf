"""A local, Heap-compatible ingestion server for demos, tests and benchmarks.

Heap offers no sandbox and silently accepts unknown app_ids, so the connector cannot be
exercised against the real service without polluting a real environment. This module mimics
the documented contract of Heap's server-side API (``/api/track``, ``/api/add_user_properties``,
``/api/add_account_properties``, single and bulk forms) strictly, records what it accepted, and
can inject the failures Heap does not document (429, 5xx, dropped connections, rate limits) so
retry and idempotency behaviour can be tested deterministically.

It deliberately depends only on the standard library (plus orjson when available) and never
imports the connector package, so it can judge the connector from the outside.

Run it out of process with::

    python -m integration_tests.heap_sandbox --port 0

Where this sandbox is stricter or more specific than Heap's documentation:

- validation errors are answered as ``{"message": "<location>: <rule>"}`` (Heap documents ``{}``)
  and never echo the offending value, unless the ``echo_refused`` fault asks for an echo of the
  refused item (to test that the connector never logs what a server quotes back);
- a bulk body with one invalid item is rejected as a whole (the worst case, as Heap does not
  document partial failures);
- rate limiting answers 429 with ``Retry-After`` (Heap documents neither);
- the rate limiter keeps separate windows per endpoint and app_id, because Heap documents its
  limits per API.
"""

from __future__ import annotations

import argparse
import dataclasses
import email.utils
import gc
import json
import math
import random
import re
import signal
import socket
import sys
import threading
import time
from collections import deque
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

API_TYPES = ("track", "add_user_properties", "add_account_properties")
API_PATHS = {f"/api/{name}": name for name in API_TYPES}
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
    """Heap's user_id is the string form of an integer in 0..2**53-1."""
    if type(value) is not str:
        raise _ItemError("user_id", "must be a string")
    if not (value.isascii() and value.isdigit()) or len(value) > 16 or int(value) > MAX_USER_ID:
        raise _ItemError("user_id", "must be the string form of an integer from 0 to 2**53-1")


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


_VALIDATORS = {
    "track": _validate_track,
    "add_user_properties": _validate_user,
    "add_account_properties": _validate_account,
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
    items = body[array_key]
    if type(items) is not list:
        raise ValidationError(f"{array_key}: must be an array")
    if not items:
        raise ValidationError(f"{array_key}: must contain at least 1 item")
    if len(items) > MAX_BULK_ITEMS:
        raise ValidationError(f"{array_key}: more than {MAX_BULK_ITEMS} items")
    validate = _VALIDATORS[api_type]
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


def _shape(api_type: str, body: Any) -> tuple[str | None, int]:
    """Describe a body for the request log, even when it is invalid."""
    if type(body) is not dict:
        return None, 0
    items = body.get(ARRAY_KEYS[api_type])
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
    return dataclasses.replace(merged, rate_limit=_normalise_rate_limit(merged.rate_limit))


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


def _json_reply(status: int, obj: Any, **kwargs: Any) -> _Reply:
    """A JSON reply."""
    return _Reply(status=status, body=_dumps(obj), **kwargs)


def _api_error(api_type: str, status: int, message: str, **kwargs: Any) -> _Reply:
    """An error in the endpoint's own style: text for accounts, JSON elsewhere."""
    if api_type == TEXT_API:
        return _Reply(status, message.encode(), "text/plain; charset=utf-8", **kwargs)
    return _json_reply(status, {"message": message}, **kwargs)


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


def _marked_item(
    api_type: str, body: dict, items: list[dict], marker: str
) -> tuple[str, dict] | None:
    """The `reject_marker` fault: Heap refusing a valid-looking item for a reason of its own
    (undocumented rules exist). Returns the item's location and the item."""
    bulk_key = ARRAY_KEYS[api_type] if ARRAY_KEYS[api_type] in body else None
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
        path = self.path.split("?", 1)[0]
        reply = self.server.sandbox._route(
            self.command, path, self.headers.get("Content-Type"), raw
        )
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
# The sandbox
# --------------------------------------------------------------------------------------------


class HeapSandbox:
    """A Heap-compatible server on 127.0.0.1 with in-process accessors and fault injection.

    ``faults`` given to the constructor are the baseline that ``reset()`` restores (all off by
    default), so a CLI-configured rate limit survives a reset between benchmark runs.
    """

    def __init__(
        self, port: int = 0, *, record_bodies: bool = True, store_items: bool = True, **faults: Any
    ) -> None:
        """`store_items=False` counts accepted items without keeping them (a 1M-item benchmark
        would otherwise hold about 1 GB); idempotency keys are still remembered."""
        self._port = port
        self._record_bodies = record_bodies
        self._store_items = store_items
        self._baseline = merge_faults(Faults(), **faults)
        self._lock = threading.Lock()
        self._server: _SandboxServer | None = None
        self._thread: threading.Thread | None = None
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

    def reset(self) -> None:
        """Clear items, log, counters, idempotency keys and limiter; restore baseline faults."""
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

    def _state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "counters": dict(self._counters),
                "accepted": {name: list(items) for name, items in self._accepted.items()},
                "requests": list(self._log),
            }

    # ---- routing -----------------------------------------------------------------------------

    def _route(self, method: str, path: str, content_type: str | None, raw: bytes) -> _Reply:
        """Pick the control plane, an API endpoint, or 404/405."""
        if path.startswith("/_sandbox/"):
            return self._control(method, path, raw)
        api_type = API_PATHS.get(path)
        if api_type is None:
            return self._finish(path, _parse(raw), None, _json_reply(404, {"message": "not found"}))
        if method != "POST":
            reply = _json_reply(
                405, {"message": "method not allowed"}, headers=(("Allow", "POST"),)
            )
            return self._finish(path, _parse(raw), api_type, reply)
        return self._api(api_type, path, content_type, raw)

    def _control(self, method: str, path: str, raw: bytes) -> _Reply:
        """Control endpoints for out-of-process use; never subject to faults."""
        routes = {
            "/_sandbox/state": ("GET", lambda: _json_reply(200, self._state())),
            "/_sandbox/counters": ("GET", lambda: _json_reply(200, self.counters())),
            "/_sandbox/faults": ("POST", lambda: self._control_faults(raw)),
            "/_sandbox/reset": ("POST", self._control_reset),
        }
        route = routes.get(path)
        if route is None:
            return _json_reply(404, {"message": "not found"})
        if method == "GET" and path == "/_sandbox/faults":
            return _json_reply(200, self.faults())
        if method != route[0]:
            return _json_reply(
                405, {"message": "method not allowed"}, headers=(("Allow", route[0]),)
            )
        return route[1]()

    def _control_faults(self, raw: bytes) -> _Reply:
        changes = _parse(raw)
        if type(changes) is not dict:
            return _json_reply(400, {"message": "body: must be a JSON object"})
        try:
            self.set_faults(**changes)
        except (ValueError, TypeError) as exc:
            return _json_reply(400, {"message": str(exc)})
        return _json_reply(200, self.faults())

    def _control_reset(self) -> _Reply:
        self.reset()
        return _json_reply(200, {})

    # ---- API ---------------------------------------------------------------------------------

    def _api(self, api_type: str, path: str, content_type: str | None, raw: bytes) -> _Reply:
        """Handle an API request in the documented fault order."""
        received_at = time.time()
        faults, roll = self._roll()
        if faults.latency_ms > 0:
            time.sleep(faults.latency_ms / 1000)
        body = _parse(raw)
        reply = self._injected(api_type, faults, roll)
        if reply is None:
            reply = self._process(api_type, content_type, body, faults, roll)
        return self._finish(path, body, api_type, reply, received_at)

    def _roll(self) -> tuple[Faults, _Roll]:
        """Snapshot the faults and draw this request's random decisions."""
        with self._lock:
            faults, rng = self._faults, self._rng
            drop = faults.drop_rate > 0 and rng.random() < faults.drop_rate
            error_500 = faults.error_500_rate > 0 and rng.random() < faults.error_500_rate
            error_429 = faults.error_429_rate > 0 and rng.random() < faults.error_429_rate
            retry_after = faults.retry_after
            if isinstance(retry_after, list):
                retry_after = rng.choice(retry_after)
        return faults, _Roll(drop, error_500, error_429, retry_after)

    @staticmethod
    def _injected(api_type: str, faults: Faults, roll: _Roll) -> _Reply | None:
        """Faults that answer before any processing."""
        if faults.fixed_status is not None:
            status = faults.fixed_status
            message = faults.fixed_message or _reason(status)
            return _api_error(api_type, status, message, reason=faults.fixed_reason)
        if roll.drop and not faults.drop_after_store:
            return _DROP
        if roll.error_500:
            return _api_error(api_type, 500, "internal server error", counter="injected_500")
        if roll.error_429:
            headers = _retry_after_header(roll.retry_after)
            return _api_error(
                api_type, 429, "too many requests", headers=headers, counter="injected_429"
            )
        return None

    def _process(
        self, api_type: str, content_type: str | None, body: Any, faults: Faults, roll: _Roll
    ) -> _Reply:
        """Validate, rate-limit and store."""
        if not _is_json(content_type):
            return _api_error(api_type, 400, "Content-Type: must be application/json")
        if body is _UNPARSEABLE:
            return _api_error(api_type, 400, "body: invalid JSON")
        try:
            app_id, _form, items = validate_body(api_type, body)
        except ValidationError as exc:
            return _api_error(api_type, 400, str(exc))
        if faults.reject_marker is not None:
            refused = _marked_item(api_type, body, items, faults.reject_marker)
            if refused is not None:
                return _refusal(api_type, *refused, faults)
        wait = self._admit_and_store(api_type, app_id, items, faults.rate_limit)
        if wait:
            headers = (("Retry-After", str(max(1, math.ceil(wait)))),)
            return _api_error(
                api_type, 429, "rate limit exceeded", headers=headers, counter="rate_limited_429"
            )
        if roll.drop and faults.drop_after_store:
            return _DROP
        return _api_ok(api_type)

    def _admit_and_store(
        self, api_type: str, app_id: Any, items: list[dict], rate_limit: dict[str, Any] | None
    ) -> float:
        """Atomically check the limiter and store; returns seconds to wait if refused."""
        with self._lock:
            now = time.time()
            if rate_limit is not None:
                wait = self._limiter.admit(rate_limit, api_type, app_id, items, now)
                if wait:
                    return wait
            self._store(api_type, app_id, items, now)
        return 0.0

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
        api_type: str | None,
        reply: _Reply,
        received_at: float | None = None,
    ) -> _Reply:
        """Count the outcome and append the request-log entry."""
        form, count = _shape(api_type, body) if api_type else (None, 0)
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
            self._count(reply)
            self._log.append(entry)
        return reply

    def _count(self, reply: _Reply) -> None:
        counters = self._counters
        counters["requests"] += 1
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
    args = parser.parse_args(argv)
    if args.rate_limit_per_identity is not None and args.rate_limit_events is None:
        parser.error("--rate-limit-per-identity needs --rate-limit-events")
    return args


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
