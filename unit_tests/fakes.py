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
