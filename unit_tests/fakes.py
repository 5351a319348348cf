"""The one fake clock of the unit tests (see `sync_clock.Clock`)."""

from __future__ import annotations


class FakeClock:
    """The sync's clock on fake time: `time` moves only when a test or a sleep moves it.

    `sleep` records each requested wait and returns `keep_going`. With `cancel_after`, a longer
    wait lasts only that long and reports cancellation (a sync cancelled in the middle of a
    wait). With `positive_sleeps`, a wait of zero or less fails the test (the pacer must never
    ask for one). After `cancel()`, every sleep returns False at once, as a cancelled sync's.
    """

    def __init__(
        self,
        start: float = 5000.0,
        keep_going: bool = True,
        positive_sleeps: bool = False,
        cancel_after: float | None = None,
    ) -> None:
        self.time = start
        self.sleeps: list[float] = []
        self.keep_going = keep_going
        self.positive_sleeps = positive_sleeps
        self.cancel_after = cancel_after
        self.cancelled = False

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> bool:
        assert seconds > 0 or not self.positive_sleeps
        if self.cancelled:
            return False
        self.sleeps.append(seconds)
        if self.cancel_after is not None and seconds > self.cancel_after:
            self.time += self.cancel_after
            return False
        self.time += seconds
        return self.keep_going

    def cancel(self) -> None:
        self.cancelled = True
