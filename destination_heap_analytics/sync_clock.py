"""The one source of time and cancellation for a sync.

Pacing, retries, the progress line and the summary all wait or read the time; the sync must be
able to stop every wait at once (an error, or an interrupted run). One object owns both, is passed
down to every part that waits, and is replaced by a single fake in tests.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """What the parts of a sync need from time."""

    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def sleep(self, seconds: float) -> bool:
        """Wait; False when the sync was cancelled before or during the wait."""
        ...

    def cancel(self) -> None:
        """Stop every present and future wait."""
        ...


class SyncClock:
    """Real time; every sleep ends early once `cancel()` is called."""

    def __init__(self) -> None:
        self._cancelled = threading.Event()

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> bool:
        return not self._cancelled.wait(seconds)

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()
