"""Heap's documented limits, in one place.

Source for every number: Heap's server-side API reference pages (developers.heap.io/reference:
`track-1`, `bulk-track`, `add-user-properties`, `bulk-add-user-properties`,
`add-account-properties`, `bulk-add-account-properties`), summarised in
`../shared/reference/heap-server-side-api.md` sections 3-9. Where Heap documents nothing, the
constant says so and the value is our own defensive choice.
"""

from __future__ import annotations

# -- Items and values (sections 3, 4, 6) ---------------------------------------------------------
MAX_IDENTITY_LENGTH = 255
"""`identity` is "case-sensitive, <= 255 characters" (track, add_user_properties)."""

MAX_EVENT_NAME_LENGTH = 1024
"""`event` is "<= 1024 characters" on Heap's own track page."""

MAX_PROPERTY_LENGTH = 1023
"""Property keys and values are strings "of fewer than 1024 characters"."""

MAX_ITEMS_PER_BULK_REQUEST = 1000
"""Each bulk form takes at most 1000 events / users / accounts per request."""

MAX_EXACT_INTEGER = 2**53
"""Not documented by Heap, which says only "number". Readers that hold numbers as doubles
(JavaScript's among them) round integers beyond 2**53 (RFC 7493, I-JSON), so larger integers are
sent as their exact decimal string, and a float that large is not accepted as an identity."""

ARRAY_JOINER = "||"
"""Heap stores an array property as one string joined with `||` (track page)."""

# -- Rate limits (section 9), as (items, window in seconds) ---------------------------------------
TRACK_BULK_LIMIT_PER_APP = (15_000, 60.0)
"""Track bulk: 15,000 events per minute per app_id."""

TRACK_BULK_LIMIT_PER_IDENTITY = (1_000, 60.0)
"""Track bulk: 1,000 events per minute per identity per app_id."""

SINGLE_REQUEST_LIMIT_PER_IDENTITY = (30, 30.0)
"""Track single and add_user_properties single: 30 requests per 30 s per identity per app_id."""

# add_user_properties bulk and add_account_properties (single and bulk): not documented, so the
# connector does no client-side pacing for them unless the user sets max_events_per_minute.

# -- Hosts (section 1) --------------------------------------------------------------------------
US_BASE_URL = "https://heapanalytics.com"
EU_BASE_URL = "https://c.eu.heap-api.com"
