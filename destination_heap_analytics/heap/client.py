"""A thin HTTP client for Heap's server-side endpoints.

One `requests.Session` (keep-alive connections, shared by the sending threads), explicit connect
and read timeouts, no redirects. It turns every answer into a typed outcome and knows nothing of
batching, retries or records: returning normally means Heap accepted the whole body (a 2xx).

`UserDeletionClient` speaks the User Deletion API: a Bearer token obtained with HTTP Basic
`app_id:api_key` (`AccessTokens`), renewed before it expires and once on a 401, and a
`Receipt` of each accepted request (its `deletion_request_id`, checked to be an id and nothing
else, since it goes into the log).

No text the server controls leaves this module as it came: Heap's error bodies are reduced by
`privacy.sanitise` to words of a fixed vocabulary, the server's HTTP reason phrase is replaced
by the standard phrase of the status code, and urllib3's warnings that quote the server (a
malformed header, a certificate) are logged without those quotes.
"""

from __future__ import annotations

import email.utils
import logging
import re
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus

import orjson
import requests
from requests.adapters import HTTPAdapter

from destination_heap_analytics.heap import limits as heap_limits
from destination_heap_analytics.heap.privacy import sanitise
from destination_heap_analytics.sync_clock import Clock

CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 60.0
USER_AGENT = "airbyte-destination-heap-analytics"
CHECK_TIMEOUTS = (5.0, 15.0)
CHECK_RETRY_SECONDS = 10.0
"""`check` is interactive: a short retry budget rides out a blip without keeping the user long
(Heap's preflight, the deletion token and the bucket alike)."""

CONFIGURATION_STATUSES = {
    401: "app_id",
    403: "app_id",
    404: "base_url",
    405: "base_url",
}
"""Statuses no record can cause: the configuration field to fix."""

API_KEY = "api_key"
DELETION_CONFIGURATION_STATUSES = {**CONFIGURATION_STATUSES, 401: API_KEY, 403: API_KEY}
"""The User Deletion API authenticates with the api_key's token, not with the app_id."""

MAIN_PRODUCTION_ONLY = (
    "Heap's User Deletion API key works only with the Main Production environment's ID as "
    "app_id (any other environment ID answers Unauthorized)"
)


class HeapError(Exception):
    """Base of the client's outcomes other than success. Messages never contain item values."""


class HeapRejected(HeapError):
    """Heap answered that the body is invalid (400 and kin).

    `message` is Heap's explanation as `privacy.sanitise` shows it: vocabulary words only.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class HeapTransientError(HeapError):
    """Worth retrying: timeouts, dropped connections, 429, 5xx. `retry_after` is in seconds."""

    def __init__(self, description: str, retry_after: float | None = None) -> None:
        super().__init__(description)
        self.retry_after = retry_after


class HeapConfigurationError(HeapError):
    """Every request will fail the same way until the user fixes `field`."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(description)
        self.field = field


class HeapClient:
    def __init__(
        self,
        endpoint_url: str,
        app_id: str,
        bulk_key: str | None,
        pool_size: int = 4,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
        app_id_in_body: bool = True,
    ) -> None:
        """`bulk_key` (`events`, `users` or `accounts`) selects the bulk form, None the single;
        `app_id_in_body` False leaves `app_id` out of the body (the User Deletion API)."""
        self.endpoint_url = endpoint_url
        self.app_id = app_id
        self.bulk_key = bulk_key
        self._body_app_id = app_id if app_id_in_body else None
        self.timeout = timeout
        self.session = requests.Session()
        # Proxies from the environment are resolved once here: with trust_env left on, requests
        # re-reads the environment and ~/.netrc for every request (Heap takes no netrc auth).
        self.session.proxies.update(requests.utils.get_environ_proxies(endpoint_url))
        self.session.trust_env = False
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers.update({"Content-Type": "application/json", "User-Agent": USER_AGENT})
        withhold_server_text_in_urllib3_warnings()

    def body(self, items: Sequence[dict]) -> bytes:
        return orjson.dumps(request_body(self._body_app_id, self.bulk_key, items))

    def send(self, items: Sequence[dict]) -> Receipt | None:
        return self.post(self.body(items))

    def post(self, body: bytes, url: str | None = None) -> Receipt | None:
        """POST a prepared body; returns on 2xx (None: the ingestion APIs answer nothing worth
        keeping), raises a HeapError subclass otherwise."""
        classify_response(self.request(url or self.endpoint_url, body))
        return None

    def request(
        self, url: str, body: bytes, headers: Mapping[str, str] | None = None, auth: object = None
    ) -> requests.Response:
        """One POST; a failure to get an answer becomes a typed error."""
        try:
            return self.session.post(
                url,
                data=body,
                headers=headers,
                auth=auth,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as error:
            raise HeapConfigurationError(
                "base_url", f"TLS handshake with the Heap host failed ({type(error).__name__})"
            ) from None
        except requests.exceptions.ConnectionError as error:
            if _is_name_resolution_failure(error):
                raise HeapConfigurationError(
                    "base_url", "The Heap host name cannot be resolved (DNS lookup failed)"
                ) from None
            raise HeapTransientError(f"connection failed ({_cause_name(error)})") from None
        except requests.exceptions.Timeout as error:
            raise HeapTransientError(f"request timed out ({type(error).__name__})") from None
        except requests.exceptions.RequestException as error:
            raise HeapTransientError(f"request failed ({type(error).__name__})") from None

    def close(self) -> None:
        self.session.close()


@dataclass(frozen=True)
class Receipt:
    """What Heap answered an accepted deletion request with: its `deletion_request_id`, or None
    when the answer carried none in the form of an id (then it is not logged)."""

    deletion_request_id: str | None


DELETION_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
"""What an id may look like to be logged: Heap sends a UUID; anything else from the server
(an echo of the request, say) could carry personal data."""


class AccessTokens:
    """The User Deletion API's Bearer token, shared by the sending threads: obtained at the
    first request, renewed when it is within DELETION_TOKEN_RENEWAL_MARGIN_SECONDS of Heap's
    5-minute lifetime (on the sync's clock), and renewed on demand after a 401."""

    def __init__(
        self,
        client: HeapClient,
        url: str,
        api_key: str,
        clock: Clock,
        lifetime: float = heap_limits.DELETION_TOKEN_LIFETIME_SECONDS,
    ) -> None:
        self._client = client
        self._url = url
        self._credentials = (client.app_id, api_key)
        self._clock = clock
        self._renew_at = lifetime - heap_limits.DELETION_TOKEN_RENEWAL_MARGIN_SECONDS
        self._token: str | None = None
        self._obtained_at = 0.0
        self._lock = threading.Lock()
        self.obtained = 0
        """Tokens obtained so far (the sync's summary and tests read it)."""

    def __repr__(self) -> str:  # the credentials and the token stay out of any printout
        return f"AccessTokens(obtained={self.obtained})"

    def current(self) -> str:
        """A token that is not about to expire."""
        with self._lock:
            if self._token is None or self._clock.now() - self._obtained_at >= self._renew_at:
                self._obtain()
            assert self._token is not None
            return self._token

    def renew(self, refused: str) -> str:
        """A new token after Heap refused `refused` (unless another thread renewed it already)."""
        with self._lock:
            if self._token == refused:
                self._obtain()
            assert self._token is not None
            return self._token

    def _obtain(self) -> None:
        started = self._clock.now()
        response = self._client.request(self._url, b"", auth=self._credentials)
        if response.status_code in (401, 403):
            raise HeapConfigurationError(
                API_KEY,
                f"Heap refused the api_key for this app_id (HTTP {response.status_code} from "
                f"{self._url}). {MAIN_PRODUCTION_ONLY}",
            )
        try:
            classify_response(response, DELETION_CONFIGURATION_STATUSES)
        except HeapRejected:  # the token request holds no record: no user can be refused here
            raise HeapConfigurationError(
                API_KEY,
                f"Heap refused the request for an access token (HTTP {response.status_code} "
                f"from {self._url}); check api_key and app_id. {MAIN_PRODUCTION_ONLY}",
            ) from None
        token = _json_field(response, "access_token")
        if token is None:
            raise HeapTransientError("Heap's answer for an access token carried none")
        self._token, self._obtained_at = token, started
        self.obtained += 1


class UserDeletionClient(HeapClient):
    """`POST /api/public/v0/user_deletion`: `{"users": [...]}` with a Bearer token. A body
    is built once per request and sent as it is on every attempt, so a retry can only ask
    again for the same users."""

    def __init__(
        self,
        endpoint_url: str,
        app_id: str,
        api_key: str,
        auth_url: str,
        clock: Clock,
        pool_size: int = 4,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
    ) -> None:
        super().__init__(
            endpoint_url, app_id, "users", pool_size, timeout=timeout, app_id_in_body=False
        )
        self.tokens = AccessTokens(self, auth_url, api_key, clock)

    def post(self, body: bytes, url: str | None = None) -> Receipt | None:
        """A 401 renews the token and tries once more; a second 401 means the key itself is
        refused, which no retry can change."""
        target = url or self.endpoint_url
        token = self.tokens.current()
        response = self._delete(target, body, token)
        if response.status_code == 401:
            response = self._delete(target, body, self.tokens.renew(token))
            if response.status_code == 401:
                raise HeapConfigurationError(
                    API_KEY,
                    "Heap refused a new access token of the User Deletion API (HTTP 401 from "
                    f"{target}). {MAIN_PRODUCTION_ONLY}",
                )
        classify_response(response, DELETION_CONFIGURATION_STATUSES)
        identifier = _json_field(response, "deletion_request_id")
        if identifier is not None and DELETION_REQUEST_ID.fullmatch(identifier) is None:
            identifier = None
        return Receipt(identifier)

    def _delete(self, url: str, body: bytes, token: str) -> requests.Response:
        return self.request(url, body, headers={"Authorization": f"Bearer {token}"})


def _json_field(response: requests.Response, name: str) -> str | None:
    """A non-empty string field of a JSON object answer, else None."""
    try:
        payload = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    value = payload.get(name) if isinstance(payload, dict) else None
    return value if isinstance(value, str) and value else None


def request_body(app_id: str | None, bulk_key: str | None, items: Sequence[dict]) -> dict:
    """Heap's JSON body: `{"app_id", **item}` (single form, `bulk_key` None) or
    `{"app_id", <bulk_key>: [...]}` (bulk form); without `app_id` when it is None (the User
    Deletion API, whose token names the app)."""
    head = {} if app_id is None else {"app_id": app_id}
    if bulk_key is None:
        if len(items) != 1:
            raise ValueError("the single form carries exactly one item")
        return {**head, **items[0]}
    return {**head, bulk_key: items}


def classify_response(
    response: requests.Response, configuration_statuses: Mapping[int, str] = CONFIGURATION_STATUSES
) -> None:
    """Map an HTTP answer onto success (return) or one of the typed errors;
    `configuration_statuses` names the field to fix for each status no record can cause."""
    status = response.status_code
    if 200 <= status < 300:
        return
    if status == 429 or status == 408 or status >= 500:
        raise HeapTransientError(
            f"HTTP {status} from Heap", retry_after=parse_retry_after(response.headers)
        )
    if status in configuration_statuses:
        field = configuration_statuses[status]
        raise HeapConfigurationError(
            field, f"Heap answered HTTP {status} ({status_phrase(status)}) for {response.url}"
        )
    if 300 <= status < 400:
        raise HeapConfigurationError(
            "base_url",
            f"Heap answered HTTP {status} (a redirect); set base_url to the final address",
        )
    raise HeapRejected(status, response_message(response))


def response_message(response: requests.Response) -> str:
    """Heap's explanation (a JSON `message`/`error`/`errors` field, or the text body), described
    in vocabulary words only; the standard status phrase when Heap gave none."""
    text = _explanation(response.text.strip())
    if not text:
        return status_phrase(response.status_code)
    return sanitise(text)


def _explanation(text: str) -> str:
    """The explanation field of a JSON body; the body itself otherwise; "" for `{}`."""
    if not text.startswith("{"):
        return text
    try:
        payload = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    if not isinstance(payload, dict):
        return text
    err = payload.get("err")  # the User Deletion API's {"err": {"message": ...}}
    nested = err.get("message") if isinstance(err, dict) else None
    found = nested or payload.get("message") or payload.get("error") or payload.get("errors")
    if found:
        return str(found)
    return "" if payload == {} else text


def status_phrase(status: int) -> str:
    """The standard reason phrase of `status`. The server's own phrase is never used: a server
    (or a proxy in between) can put any text there."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "non-standard status"


def parse_retry_after(headers: requests.structures.CaseInsensitiveDict) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP-date; None if absent/invalid."""
    value = headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    return max(0.0, moment.timestamp() - time.time())


class WithholdServerText(logging.Filter):
    """Keeps urllib3's wording of a record and withholds its arguments and traceback.

    urllib3 logs a response header it cannot parse, and a certificate that does not match the
    host, as WARNING records whose arguments quote the server; the Airbyte logger would print
    them. Its format strings are urllib3's own text, so they stay.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = re.sub(r"%\w", "<withheld>", str(record.msg))
        record.args = None
        record.exc_info = record.exc_text = record.stack_info = None
        return True


URLLIB3_LOGGERS_QUOTING_THE_SERVER = ("urllib3.connection",)


def withhold_server_text_in_urllib3_warnings() -> None:
    """Install `WithholdServerText` once on the urllib3 loggers that quote the server."""
    for name in URLLIB3_LOGGERS_QUOTING_THE_SERVER:
        logger = logging.getLogger(name)
        if not any(isinstance(f, WithholdServerText) for f in logger.filters):
            logger.addFilter(WithholdServerText())


def _cause_name(error: BaseException) -> str:
    """The innermost exception type, e.g. ConnectionRefusedError or RemoteDisconnected."""
    seen = error
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    for arg in getattr(error, "args", ()):
        reason = getattr(arg, "reason", None)
        if reason is not None:
            return type(reason).__name__
    return type(seen).__name__


def _is_name_resolution_failure(error: BaseException) -> bool:
    """urllib3 reports DNS failure as NameResolutionError (or socket.gaierror in its chain)."""
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror) or type(current).__name__ == "NameResolutionError":
            return True
        pending.extend(c for c in (current.__cause__, current.__context__) if c is not None)
        pending.extend(a for a in current.args if isinstance(a, BaseException))
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)
    return False
