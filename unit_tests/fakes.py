"""Test doubles shared by the unit tests."""

from __future__ import annotations


class FakeTime:
    """A clock that moves only when `sleep` is called; records every sleep.

    `sleep` returns `keep_going` (False simulates a cancelled sync). With `positive_sleeps`, a
    sleep of zero or less fails the test (the pacer must never ask for one).
    """

    def __init__(
        self, start: float = 1000.0, keep_going: bool = True, positive_sleeps: bool = False
    ) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.keep_going = keep_going
        self.positive_sleeps = positive_sleeps

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        assert seconds > 0 or not self.positive_sleeps
        self.sleeps.append(seconds)
        self.now += seconds
        return self.keep_going


class FakeClock:
    """The sync's Clock (`sync_clock.Clock`) on fake time: `time` moves only when a test (or a
    sleep) moves it; `cancel()` makes every later sleep return False at once."""

    def __init__(self, start: float = 5000.0) -> None:
        self.time = start
        self.sleeps: list[float] = []
        self.cancelled = False

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> bool:
        if self.cancelled:
            return False
        self.sleeps.append(seconds)
        self.time += seconds
        return True

    def cancel(self) -> None:
        self.cancelled = True
