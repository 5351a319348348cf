"""Heap's documented limits, in one place, each with the page it comes from.

The pages are Heap's server-side API reference (https://developers.heap.io/reference/...) and
help centre (https://help.heap.io/...). Where Heap documents nothing, the constant says so and
the value is our own defensive choice.
"""

from __future__ import annotations

TRACK = "https://developers.heap.io/reference/track-1"
BULK_TRACK = "https://developers.heap.io/reference/bulk-track"
ADD_USER_PROPERTIES = "https://developers.heap.io/reference/add-user-properties"
BULK_ADD_USER_PROPERTIES = "https://developers.heap.io/reference/bulk-add-user-properties"
ADD_ACCOUNT_PROPERTIES = "https://developers.heap.io/reference/add-account-properties"
BULK_ADD_ACCOUNT_PROPERTIES = "https://developers.heap.io/reference/bulk-add-account-properties"
IDENTIFY = "https://developers.heap.io/reference/identify-1"
USER_DELETION = "https://developers.heap.io/reference/user-deletion"
USER_DELETION_HELP = "https://help.heap.io/data-privacy/data-deletion/user-deletion-with-postman"

# -- Items and values -----------------------------------------------------------------------------
MAX_IDENTITY_LENGTH = 255
"""`identity` is "case-sensitive, <= 255 characters". Source: TRACK, ADD_USER_PROPERTIES."""

MAX_EVENT_NAME_LENGTH = 1024
"""`event` is "<= 1024 characters". Source: TRACK."""

MAX_PROPERTY_LENGTH = 1023
"""Property keys and values are strings "of fewer than 1024 characters". Source: TRACK,
ADD_USER_PROPERTIES, ADD_ACCOUNT_PROPERTIES."""

MAX_ITEMS_PER_BULK_REQUEST = 1000
"""Each bulk form takes at most 1000 events / users / accounts per request. Source: BULK_TRACK,
BULK_ADD_USER_PROPERTIES, BULK_ADD_ACCOUNT_PROPERTIES."""

MAX_EXACT_INTEGER = 2**53
"""Not documented by Heap, which says only "number". Readers that hold numbers as doubles
(JavaScript's among them) round integers beyond 2**53 (RFC 7493, I-JSON), so larger integers are
sent as their exact decimal string, and a float that large is not accepted as an identity.
Source for the rounding: https://www.rfc-editor.org/rfc/rfc7493#section-2.2."""

MAX_USER_ID = 2**53 - 1
"""A Heap SDK `user_id` is "the string form of an integer from 0 to 2^53-1" (track, identify);
the User Deletion API takes the same integer as a JSON number. Source: TRACK, IDENTIFY,
USER_DELETION."""

MAX_USERS_PER_DELETION_REQUEST = 10_000
"""`POST /api/public/v0/user_deletion` takes "up to 10,000 users" a request, whatever
`batch_size` (capped by the ingestion APIs' MAX_ITEMS_PER_BULK_REQUEST) says. Source:
USER_DELETION."""

MAX_USER_IDS_PER_IDENTITY = 10
"""Identify: Heap maps at most 10 `user_id`s to one identity per month; the 11th is ignored,
without an error. Source: IDENTIFY."""

DELETION_TOKEN_LIFETIME_SECONDS = 5 * 60.0
"""The User Deletion API's access token "expires after 5 minutes". Source: USER_DELETION_HELP."""

DELETION_TOKEN_RENEWAL_MARGIN_SECONDS = 60.0
"""Our choice: a token is renewed once it is this close to its expiry, so a request never
leaves with a token that may expire on the way (a 401 still renews it, once)."""

ARRAY_JOINER = "||"
"""Heap stores an array property as one string joined with `||`. Source: TRACK."""

# -- Rate limits, as (items, window in seconds) ------------------------------------------------
TRACK_BULK_LIMIT_PER_APP = (15_000, 60.0)
"""Track bulk: 15,000 events per minute per app_id. Source: BULK_TRACK."""

TRACK_BULK_LIMIT_PER_IDENTITY = (1_000, 60.0)
"""Track bulk: 1,000 events per minute per identity per app_id. Source: BULK_TRACK."""

SINGLE_REQUEST_LIMIT_PER_IDENTITY = (30, 30.0)
"""Track single and add_user_properties single: 30 requests per 30 s per identity per app_id.
Source: TRACK, ADD_USER_PROPERTIES."""

# add_user_properties bulk and add_account_properties (single and bulk): not documented, so the
# connector does no client-side pacing for them unless the user sets max_events_per_minute.
# Identify: not documented either; it has only a single form, so the connector paces it like the
# single forms (SINGLE_REQUEST_LIMIT_PER_IDENTITY), a defensive choice. User deletion: not
# documented, and a sync makes few requests of up to 10,000 users, so it is never paced.

# -- Hosts ----------------------------------------------------------------------------------------
US_BASE_URL = "https://heapanalytics.com"
EU_BASE_URL = "https://c.eu.heap-api.com"
"""Heap's EU data centre, "NOT heapanalytics.com". Source: TRACK, ADD_USER_PROPERTIES."""

# -- Endpoints: the paths under the base URL (each on its own page above) --------------------------
TRACK_PATH = "/api/track"
ADD_USER_PROPERTIES_PATH = "/api/add_user_properties"
ADD_ACCOUNT_PROPERTIES_PATH = "/api/add_account_properties"
IDENTIFY_PATH = "/api/v1/identify"
"""Identify: one pair a request; Heap documents no bulk form."""
AUTH_TOKEN_PATH = "/api/public/v0/auth_token"
"""User Deletion API: HTTP Basic `app_id:api_key` gives `{"access_token": ...}`."""
USER_DELETION_PATH = "/api/public/v0/user_deletion"
"""User Deletion API: `{"users": [...]}` with a Bearer token; answers 201 with a
`deletion_request_id`. It searches every environment of the account, on US and EU hosts."""
