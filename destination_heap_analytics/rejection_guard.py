"""Stop a sync in which Heap refuses most of what it is sent.

Isolating a refused item costs requests (a batch is split in halves until the item stands
alone), which is right for a few bad rows among good ones. When Heap refuses nearly everything
(a wrong mapping, an app Heap will not take data for), isolating every item would cost about two
requests per record, only to skip them all and report success. The guard watches the records
Heap has judged recently, accepted or refused, and ends the sync as soon as refusals dominate,
after a bounded number of requests.

A refusal stays in question while it is among the recent records: until then it may turn out
to be the start of such a failure, so the loader holds the states that follow it (see
`settled`). States are therefore never released past records that a failed sync refused.
"""

from __future__ import annotations

import threading
from collections import deque

RECENT_RECORDS = 1000
"""How many of the most recently judged records the rule looks at (one full batch)."""
MIN_REFUSED = 10
"""Refusals needed before the rule can fire: a handful of bad rows is never enough alone."""


class HeapRefusesMost(Exception):
    """Heap refused more of the recent records than it accepted; the sync must fail."""

    def __init__(self, refused: int, judged: int, last_reason: str) -> None:
        super().__init__(
            f"Heap refused {refused} of the last {judged} records it judged (last refusal: "
            f"{last_reason}). When most records are refused, the cause is the mapping or the "
            "app_id rather than a few bad rows, so the sync stops instead of skipping them all"
        )
        self.refused = refused
        self.judged = judged


class RejectionGuard:
    """Shared by the sending threads of one route; every method holds the lock."""

    def __init__(self, recent: int = RECENT_RECORDS, min_refused: int = MIN_REFUSED) -> None:
        self._recent = recent
        self._min_refused = min_refused
        self._window: deque[list] = deque()  # [records, refused?], oldest first
        self._accepted = 0
        self._refused = 0
        self._tripped: HeapRefusesMost | None = None
        self._judged = 0
        """Records judged since the start, for `settled` positions."""
        self._lock = threading.Lock()

    def accepted(self, records: int) -> None:
        with self._lock:
            self._add(records, refused=False)

    def refused(self, reason: str) -> int:
        """One record refused on its own; trips the guard when refusals now dominate. Returns
        the refusal's position, for `settled`."""
        with self._lock:
            self._add(1, refused=True)
            if (
                self._tripped is None
                and self._refused >= self._min_refused
                and self._refused > self._accepted
            ):
                self._tripped = HeapRefusesMost(
                    self._refused, self._refused + self._accepted, reason
                )
            return self._judged

    def settled(self, position: int) -> bool:
        """Has the refusal at `position` left the recent records, so it can no longer help trip
        the guard? (Read without the lock: a stale answer only holds a state a little longer.)"""
        return self._judged - position >= self._recent

    def check(self) -> None:
        """Raises once tripped, so every sending thread stops before its next request."""
        if self._tripped is not None:
            raise self._tripped

    def _add(self, records: int, refused: bool) -> None:
        self._judged += records
        self._window.append([records, refused])
        self._count(records, refused)
        excess = self._accepted + self._refused - self._recent
        while excess > 0:
            oldest = self._window[0]
            taken = min(oldest[0], excess)
            oldest[0] -= taken
            self._count(-taken, oldest[1])
            excess -= taken
            if oldest[0] == 0:
                self._window.popleft()

    def _count(self, records: int, refused: bool) -> None:
        if refused:
            self._refused += records
        else:
            self._accepted += records
