"""Client-side pacing to Heap's rate limits, so the connector itself never causes a 429.

Two mechanisms, both over the items of each request:
- a rolling-window count: a request is sent only if the items sent in the last window (lengthened
  by a small safety margin for network jitter), plus this request's, stay within the limit. This
  is the hard guarantee, per app and per identity.
- even spacing for the per-app limit (a leaky bucket at limit / (window + margin)), so requests
  flow steadily instead of a burst of a whole minute's quota followed by a long silence.

The per-app window is one exact log (`RollingWindow`). The per-identity windows cannot be: one
log per identity cost about 1 KB each, so a sync of a million distinct identities inside a minute
took a gigabyte. `IdentityWindows` keeps all of them in a fixed few megabytes instead, as counts
that may only err upwards: an identity can be paced a little early when very many identities
share the window, never late. Its docstring gives the structure and why it is safe.

Every attempt, retries included, passes through `acquire`, since Heap counts those too.
`waited_seconds` is the time the pacer actually spent waiting, read on its clock around each
sleep, so a sync cancelled in the middle of a wait counts only the part that passed.
"""

from __future__ import annotations

import sys
import threading
from array import array
from collections import Counter, deque
from collections.abc import Iterable

from destination_heap_analytics.config.settings import Pacing, RateLimit
from destination_heap_analytics.sync_clock import Clock

SAFETY_MARGIN_FRACTION = 0.02
"""Extra window length, as a fraction of the window: requests arrive later than they leave."""

SKETCH_BUCKETS = 8
"""Time buckets per identity window. More buckets count an identity's old items for less time
past the window (at most 1/8 of it here) at the price of one more bucket of memory each."""

SKETCH_WIDTH = 1 << 15
"""Counters per sketch row (a power of two). Measured with one item per identity: a million
items in the window put an identity's count over by 27 on average and 44 at most (2.7% and 4.4%
of Heap's 1,000 per identity); Heap's default 15,000 a minute, by 0.14 on average."""

Cells = list[tuple[int, int, int]]
"""A request's identities, each as (row-0 counter, row-1 counter, items in the request)."""


class RollingWindow:
    """Items sent in the last `window` seconds, as a log of (time, count) entries."""

    def __init__(self, limit: RateLimit) -> None:
        self.capacity = limit.items
        self.window = limit.window_seconds * (1 + SAFETY_MARGIN_FRACTION)
        self._log: deque[tuple[float, int]] = deque()
        self._total = 0

    @property
    def empty(self) -> bool:
        return not self._log

    def expire(self, now: float) -> None:
        log = self._log
        while log and log[0][0] <= now - self.window:
            self._total -= log.popleft()[1]

    def wait_needed(self, now: float, count: int) -> float:
        """Seconds until `count` more items fit; 0 when they fit now (one oversized request fits
        an empty window rather than never)."""
        self.expire(now)
        excess = self._total + count - self.capacity
        if excess <= 0 or not self._log:
            return 0.0
        for sent_at, sent in self._log:
            excess -= sent
            if excess <= 0:
                return sent_at + self.window - now
        return self._log[-1][0] + self.window - now

    def record(self, now: float, count: int) -> None:
        self._log.append((now, count))
        self._total += count


def paced_user(item: dict) -> str | tuple[str, object] | None:
    """Whom Heap's per-identity limit counts an item against: its identity, else its user_id
    (a tuple, so that it never equals an identity), else no one."""
    identity = item.get("identity")
    if identity is not None:
        return identity
    user_id = item.get("user_id")
    return None if user_id is None else ("user_id", user_id)


class IdentityWindows:
    """Every identity's items in the last `window` seconds, in fixed memory, never undercounted.

    Structure: time is cut into buckets of window / SKETCH_BUCKETS seconds. A ring of
    SKETCH_BUCKETS + 1 slots holds the buckets that can still overlap the rolling window: the
    current one, and the oldest, which the window only partly covers. Each slot is a count-min
    sketch: two rows of SKETCH_WIDTH counters, and an identity adds its items to one counter per
    row, chosen by disjoint bits of Python's hash of the identity. A running total per counter
    (the sum over the live slots) makes the check two lookups per identity.

    Why it never undercounts: a counter holds this identity's items plus those of every identity
    that shares it, so each row is at least the true count, and so is the lower of the two. And
    every item sent within the window lies in one of the live slots, since a slot leaves the ring
    only once its bucket is wholly older than the window. So a request that passes the check is
    within Heap's limit in every rolling window, collisions or not; collisions and the up to one
    bucket of already expired items in the oldest slot can only make an identity wait early.

    Why a sketch: an exact count per identity costs memory per identity; the counts of a million
    identities in one window do not fit the connector's memory budget in Python. The sketch's
    memory is fixed: SKETCH_BUCKETS + 2 arrays of 2 x SKETCH_WIDTH 32-bit counters (2.6 MB), plus
    per slot the list of counters it touched, so that retiring a slot costs in proportion to what
    it holds rather than a scan of the whole array (at most the same size again). Two rows keep a
    light identity from being held back by a heavy one it happens to share a counter with: that
    needs both rows to collide. A counter cannot overflow: 2^31 items would have to be sent
    within one window.
    """

    def __init__(self, limit: RateLimit, width: int = SKETCH_WIDTH) -> None:
        if width < 1 or width & (width - 1):
            raise ValueError("the sketch width must be a power of two")
        self.capacity = limit.items
        self.window = limit.window_seconds * (1 + SAFETY_MARGIN_FRACTION)
        self._bucket_seconds = self.window / SKETCH_BUCKETS
        self._slot_count = SKETCH_BUCKETS + 1
        self._mask = width - 1
        self._row_offset = width
        self._row_shift = sys.hash_info.width // 2
        empty = bytes(2 * width * array("i").itemsize)
        self._totals = array("i", empty)
        self._slots = [array("i", empty) for _ in range(self._slot_count)]
        self._touched = [array("i") for _ in range(self._slot_count)]
        self._current: int | None = None
        """Index of the current bucket (time // bucket seconds)."""

    def cells(self, items: list[dict]) -> Cells:
        """The users of a request, as their counters and item counts: an item's `identity`, or
        its `user_id` (an event or an identify pair names its user either way, and Heap's limit
        is per user); items with neither are not paced per user. A user_id is counted apart
        from an identity of the same text, so the two never share a count on purpose."""
        counts = Counter(map(paced_user, items))
        counts.pop(None, None)
        mask, offset, shift = self._mask, self._row_offset, self._row_shift
        return [
            (hashed & mask, offset + (hashed >> shift & mask), count)
            for hashed, count in zip(map(hash, counts), counts.values(), strict=True)
        ]

    def wait_needed(self, now: float, cells: Cells) -> float:
        """Seconds until these items fit; 0 when they fit now. An identity with nothing in its
        window may send more than the limit in one request, rather than never."""
        self._advance(now)
        totals, capacity = self._totals, self.capacity
        wait = 0.0
        for first, second, count in cells:
            seen_first = totals[first]
            if seen_first + count <= capacity:
                continue
            seen_second = totals[second]
            if seen_second + count <= capacity or not seen_first or not seen_second:
                continue
            wait = max(wait, self._wait_until_fits(now, first, second, count))
        return wait

    def record(self, now: float, cells: Cells) -> None:
        self._advance(now)
        slot = self._current % self._slot_count
        counters, totals = self._slots[slot], self._totals
        note = self._touched[slot].append
        for first, second, count in cells:
            if not counters[first]:
                note(first)
            if not counters[second]:
                note(second)
            counters[first] += count
            counters[second] += count
            totals[first] += count
            totals[second] += count

    def _wait_until_fits(self, now: float, first: int, second: int, count: int) -> float:
        """Retire the live buckets oldest first until this identity's items fit (or its window
        is empty); the wait lasts until that bucket leaves the ring."""
        left_first, left_second = self._totals[first], self._totals[second]
        oldest = self._current - SKETCH_BUCKETS
        for bucket in range(oldest, self._current + 1):
            counters = self._slots[bucket % self._slot_count]
            left_first -= counters[first]
            left_second -= counters[second]
            left = min(left_first, left_second)
            if left == 0 or left + count <= self.capacity:
                return self._until_bucket_leaves(now, bucket)
        return self._until_bucket_leaves(now, self._current)  # all live buckets gone: empty

    def _until_bucket_leaves(self, now: float, bucket: int) -> float:
        """Seconds until `bucket` is out of the ring. Never 0: when float rounding leaves the
        clock a hair short of the boundary, the caller waits a hair more and checks again."""
        leaves_at = (bucket + self._slot_count) * self._bucket_seconds
        return max(leaves_at - now, self._bucket_seconds * 1e-6)

    def _advance(self, now: float) -> None:
        """Move the ring to the bucket of `now`, retiring the buckets that left the window."""
        current = int(now // self._bucket_seconds)
        if self._current is None:
            self._current = current
            return
        if current <= self._current:
            return
        first_new = max(self._current + 1, current - self._slot_count + 1)
        for bucket in range(first_new, current + 1):
            self._retire(bucket % self._slot_count)
        self._current = current

    def _retire(self, slot: int) -> None:
        """Empty a slot for reuse, taking its counts out of the totals."""
        counters, totals = self._slots[slot], self._totals
        for cell in self._touched[slot]:
            totals[cell] -= counters[cell]
            counters[cell] = 0
        self._touched[slot] = array("i")


class Pacer:
    def __init__(self, pacing: Pacing, clock: Clock, sketch_width: int = SKETCH_WIDTH) -> None:
        """`clock` is the sync's: its sleep returns False once the sync is cancelled.
        `sketch_width` sizes the per-identity counts (smaller only paces earlier)."""
        self._app = RollingWindow(pacing.per_app) if pacing.per_app else None
        self._identities = (
            IdentityWindows(pacing.per_identity, sketch_width) if pacing.per_identity else None
        )
        self._interval = self._app.window / self._app.capacity if self._app is not None else 0.0
        self._next_free = 0.0
        self._clock = clock
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    @property
    def enabled(self) -> bool:
        return self._app is not None or self._identities is not None

    def acquire(self, items: Iterable[dict]) -> bool:
        """Block until these items may be sent, then count them; False if cancelled meanwhile."""
        if not self.enabled:
            return True
        items = list(items)
        cells = self._identities.cells(items) if self._identities is not None else None
        while True:
            with self._lock:
                now = self._clock.now()
                wait = self._wait_needed(now, len(items), cells)
                if wait <= 0:
                    self._record(now, len(items), cells)
                    return True
            if not self._wait(wait):
                return False

    def _wait(self, seconds: float) -> bool:
        """Sleep, counting only the time that passed: a cancelled sleep ends early."""
        started = self._clock.now()
        keep_going = self._clock.sleep(seconds)
        waited = self._clock.now() - started
        with self._lock:
            self.waited_seconds += waited
        return keep_going

    def _wait_needed(self, now: float, count: int, cells: Cells | None) -> float:
        wait = 0.0
        if self._app is not None:
            wait = max(self._next_free - now, self._app.wait_needed(now, count))
        if cells:
            wait = max(wait, self._identities.wait_needed(now, cells))
        return wait

    def _record(self, now: float, count: int, cells: Cells | None) -> None:
        if self._app is not None:
            self._app.record(now, count)
            self._next_free = max(now, self._next_free) + count * self._interval
        if cells:
            self._identities.record(now, cells)
