"""Client-side pacing to Heap's rate limits, so the connector itself never causes a 429.

Two mechanisms per limit, both over the items of each request:
- a rolling-window log: a request is sent only if the items sent in the last window (plus a
  small safety margin for network jitter), plus this request's, stay within the limit. This is the
  hard guarantee, per app and per identity.
- even spacing for the per-app limit (a leaky bucket at limit / (window + margin)), so requests
  flow steadily instead of a burst of a whole minute's quota followed by a long silence.

Every attempt, retries included, passes through `acquire`, since Heap counts those too.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable

from destination_heap_analytics.config import Pacing, RateLimit

SAFETY_MARGIN_FRACTION = 0.02
"""Extra window length, as a fraction of the window: requests arrive later than they leave."""


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


class Pacer:
    def __init__(
        self,
        pacing: Pacing,
        sleep: Callable[[float], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`sleep(seconds)` returns False when the sync is cancelled during the wait."""
        self._app = RollingWindow(pacing.per_app) if pacing.per_app else None
        self._identity_limit = pacing.per_identity
        self._identities: dict[str, RollingWindow] = {}
        self._interval = self._app.window / self._app.capacity if self._app is not None else 0.0
        self._next_free = 0.0
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._last_sweep = clock()
        self.waited_seconds = 0.0

    @property
    def enabled(self) -> bool:
        return self._app is not None or self._identity_limit is not None

    def acquire(self, items: Iterable[dict]) -> bool:
        """Block until these items may be sent, then count them; False if cancelled meanwhile."""
        if not self.enabled:
            return True
        items = list(items)
        identities = self._identity_counts(items)
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait_needed(now, len(items), identities)
                if wait <= 0:
                    self._record(now, len(items), identities)
                    return True
            self.waited_seconds += wait
            if not self._sleep(wait):
                return False

    def _identity_counts(self, items: list[dict]) -> Counter | None:
        if self._identity_limit is None:
            return None
        return Counter(item["identity"] for item in items if "identity" in item)

    def _wait_needed(self, now: float, count: int, identities: Counter | None) -> float:
        wait = 0.0
        if self._app is not None:
            wait = max(self._next_free - now, self._app.wait_needed(now, count))
        if identities:
            for identity, n in identities.items():
                window = self._identities.get(identity)
                if window is not None:
                    wait = max(wait, window.wait_needed(now, n))
        return wait

    def _record(self, now: float, count: int, identities: Counter | None) -> None:
        if self._app is not None:
            self._app.record(now, count)
            self._next_free = max(now, self._next_free) + count * self._interval
        if identities and self._identity_limit is not None:
            for identity, n in identities.items():
                window = self._identities.get(identity)
                if window is None:
                    window = self._identities[identity] = RollingWindow(self._identity_limit)
                window.record(now, n)
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Forget identities with nothing in their window, so memory follows recent traffic."""
        assert self._identity_limit is not None
        if now - self._last_sweep < self._identity_limit.window_seconds:
            return
        self._last_sweep = now
        for identity in list(self._identities):
            window = self._identities[identity]
            window.expire(now)
            if window.empty:
                del self._identities[identity]
