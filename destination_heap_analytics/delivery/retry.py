"""Retry a request through transient failures: exponential backoff, jitter, Retry-After.

Hand-written rather than taken from `backoff` or `tenacity`: the loop must honour `Retry-After`
(seconds or an HTTP date) over its own backoff, stop within a total time budget, and wake up at
once when the sync is aborted. Those three together are about as long in either library as here.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from destination_heap_analytics.heap.client import HeapTransientError
from destination_heap_analytics.sync_clock import Clock

T = TypeVar("T")

BASE_DELAY_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0


class RetriesExhausted(Exception):
    """The total retry time ran out; the sync must fail (transient_error), not skip rows."""

    def __init__(self, last_error: HeapTransientError, attempts: int, elapsed: float) -> None:
        super().__init__(
            f"{last_error} (gave up after {attempts} attempts in {elapsed:.0f} s; "
            "raise max_retry_seconds to wait longer)"
        )
        self.last_error = last_error


class Cancelled(Exception):
    """The sync is stopping; abandon the wait."""


@dataclass(frozen=True)
class RetryPolicy:
    max_retry_seconds: float
    base_delay: float = BASE_DELAY_SECONDS
    max_backoff: float = MAX_BACKOFF_SECONDS

    def delay(self, attempt: int, retry_after: float | None, rand: Callable[[], float]) -> float:
        """Equal jitter, uniform(step / 2, step) with step = min(cap, base * 2^n), or Heap's
        Retry-After when that is longer.

        The floor of half a step grows with every attempt whatever Heap says (`Retry-After: 0`,
        or a 5xx storm with no header), so one batch makes at most about ten attempts in any
        minute instead of hammering Heap; the jitter still spreads concurrent batches apart.
        """
        step = min(self.max_backoff, self.base_delay * (2**attempt))
        backoff = step / 2 + rand() * step / 2
        return backoff if retry_after is None else max(backoff, retry_after)


def call_with_retries(
    operation: Callable[[], T],
    policy: RetryPolicy,
    clock: Clock,
    on_retry: Callable[[HeapTransientError, float], None] = lambda error, delay: None,
    rand: Callable[[], float] = random.random,
    wait_turn: Callable[[], bool] = lambda: True,
) -> T:
    """Run `operation` until it succeeds, raises a non-transient error, or time runs out.

    `clock` is the sync's: its sleep returns False when the sync was cancelled during the wait.
    `wait_turn` runs before every attempt and returns False when cancelled: the pacer's wait
    for the rate limit, which does not count against `max_retry_seconds`. The budget counts the
    time spent retrying only, failed attempts and the waits between them, so a batch that first
    waited a minute for its turn still gets every retry it is owed.
    """
    spent = 0.0
    attempt = 0
    while True:
        if not wait_turn():
            raise Cancelled()
        started = clock.now()
        try:
            return operation()
        except HeapTransientError as error:
            spent += clock.now() - started
            delay = policy.delay(attempt, error.retry_after, rand)
            attempt += 1
            if spent + delay > policy.max_retry_seconds:
                raise RetriesExhausted(error, attempt, spent) from None
            on_retry(error, delay)
            slept_from = clock.now()
            if not clock.sleep(delay):
                raise Cancelled() from None
            spent += clock.now() - slept_from
