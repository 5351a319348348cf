"""Heap's two silent rules for identify, applied to the pairs of one sync before they are sent.

Heap maps at most one identity to a `user_id` (a later pair with another identity is dropped)
and at most 10 `user_id`s to one identity a month (the 11th is ignored), and answers `200 {}`
either way (Heap's Identify reference, `heap.limits.IDENTIFY`). A sync cannot see what
earlier syncs sent, but it sees its own pairs: a pair Heap would drop is not sent; it is skipped
and counted by its reason, like an invalid record (the summary, the log by row number, the
rejected-records bucket, `destinationStats`), so the user learns what Heap would have kept
quiet about. The same pair again is sent: Heap keeps it as it is, and the record asked for it.

One `IdentifyPairs` serves every identify stream of a sync, since Heap applies its rules per
app, and it runs on the main thread in input order (the first pair of a user_id wins, as at
Heap). A pair counts once it is admitted, before Heap has answered: Heap refusing a valid pair
is not expected, and a sync that stops early resends its unacknowledged pairs anyway.

Memory grows with the distinct user_ids of the sync's identify records: about 200 bytes each
(a dict entry with the user_id as an integer, and the identity's text, shared with the count of
its user_ids). The counts are exact, so a pair is never skipped that Heap would apply.
"""

from __future__ import annotations

from destination_heap_analytics.heap import limits as heap_limits
from destination_heap_analytics.mapping.transformer import InvalidRecord

SECOND_IDENTITY = (
    "user_id already identified with another identity earlier in this sync "
    "(Heap keeps the first and would ignore this pair, so it is not sent)"
)
USER_ID_LIMIT = (
    f"identity already has {heap_limits.MAX_USER_IDS_PER_IDENTITY} user_ids in this sync "
    f"(Heap takes at most {heap_limits.MAX_USER_IDS_PER_IDENTITY} a month and would ignore "
    "this pair, so it is not sent)"
)


class IdentifyPairs:
    """The identify pairs admitted so far in a sync."""

    def __init__(self) -> None:
        self._owner: dict[int, str] = {}
        """user_id -> the identity Heap will keep for it."""
        self._user_ids: dict[str, int] = {}
        """identity -> how many user_ids were admitted for it."""

    def admit(self, item: dict) -> dict:
        """The item when Heap would apply it (or keeps it as it is); InvalidRecord with the
        rule's reason when Heap would silently drop it."""
        user_id = int(item["user_id"])  # the transform's decimal text of 0..2**53-1
        identity = item["identity"]
        owner = self._owner.get(user_id)
        if owner is not None:
            if owner != identity:
                raise InvalidRecord(SECOND_IDENTITY)
            return item
        linked = self._user_ids.get(identity, 0)
        if linked >= heap_limits.MAX_USER_IDS_PER_IDENTITY:
            raise InvalidRecord(USER_ID_LIMIT)
        self._owner[user_id] = identity
        self._user_ids[identity] = linked + 1
        return item
