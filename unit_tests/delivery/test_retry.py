"""call_with_retries: backoff, Retry-After, time budget and cancellation, on a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_heap_analytics.delivery.retry import (
    Cancelled,
    RetriesExhausted,
    RetryPolicy,
    call_with_retries,
)
from destination_heap_analytics.heap.client import (
    HeapConfigurationError,
    HeapRejected,
    HeapTransientError,
)
from unit_tests.fakes import FakeClock


class Flaky:
    """Raises the given errors in turn, then returns `result`."""

    def __init__(self, errors: list[Exception], result: object = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def run(operation, policy, fake, rand=lambda: 1.0, on_retry=None):
    kwargs = {"on_retry": on_retry} if on_retry is not None else {}
    return call_with_retries(operation, policy, fake, rand=rand, **kwargs)


def test_succeeds_after_transient_failures():
    fake = FakeClock()
    operation = Flaky([HeapTransientError("HTTP 503 from Heap")] * 3, result="done")

    result = run(operation, RetryPolicy(max_retry_seconds=600), fake)

    assert result == "done"
    assert operation.calls == 4
    assert len(fake.sleeps) == 3


def test_success_on_first_try_never_sleeps():
    fake = FakeClock()
    operation = Flaky([])

    assert run(operation, RetryPolicy(max_retry_seconds=600), fake) == "ok"
    assert fake.sleeps == []


def test_retry_after_is_used_as_the_delay():
    fake = FakeClock()
    operation = Flaky(
        [
            HeapTransientError("HTTP 429", retry_after=7.0),
            HeapTransientError("HTTP 429", retry_after=0.0),
        ]
    )

    run(operation, RetryPolicy(max_retry_seconds=600), fake, rand=lambda: 0.5)

    assert fake.sleeps == [7.0, 0.75]  # Retry-After 0 still waits the growing floor


def test_backoff_with_max_jitter_doubles_up_to_the_cap():
    fake = FakeClock()
    operation = Flaky([HeapTransientError("HTTP 500")] * 8)
    policy = RetryPolicy(max_retry_seconds=10_000, base_delay=0.5, max_backoff=30.0)

    run(operation, policy, fake, rand=lambda: 1.0)

    assert fake.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_backoff_with_zero_jitter_still_waits_half_of_each_growing_step():
    fake = FakeClock()
    operation = Flaky([HeapTransientError("HTTP 500")] * 4)

    run(operation, RetryPolicy(max_retry_seconds=600), fake, rand=lambda: 0.0)

    assert fake.sleeps == [0.25, 0.5, 1.0, 2.0]


@pytest.mark.parametrize("attempt", range(10))
@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.999, 1.0])
def test_delay_is_within_the_equal_jitter_bounds(attempt, jitter):
    policy = RetryPolicy(max_retry_seconds=600, base_delay=0.5, max_backoff=30.0)
    step = min(30.0, 0.5 * 2**attempt)

    delay = policy.delay(attempt, None, lambda: jitter)

    assert step / 2 <= delay <= step
    assert delay == pytest.approx(step / 2 + jitter * step / 2)


def test_a_longer_retry_after_overrides_the_backoff():
    policy = RetryPolicy(max_retry_seconds=600, base_delay=0.5, max_backoff=30.0)

    assert policy.delay(2, 2.5, lambda: 1.0) == 2.5
    assert policy.delay(9, 2.5, lambda: 1.0) == 30.0


@settings(max_examples=200, deadline=None)
@given(
    jitters=st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=50),
    retry_afters=st.lists(st.sampled_from([None, 0.0, 0.001, 1.0]), min_size=1, max_size=50),
)
def test_one_request_never_makes_more_than_ten_attempts_in_any_minute(jitters, retry_afters):
    """Whatever Heap answers (Retry-After 0, no header) and however the jitter falls."""
    fake = FakeClock()
    errors = [HeapTransientError("HTTP 503", retry_after=r) for r in retry_afters] * 4
    draws = iter(jitters * 200)
    attempts: list[float] = []

    def operation() -> str:
        attempts.append(fake.time)
        if len(attempts) <= len(errors):
            raise errors[len(attempts) - 1]
        return "ok"

    run(operation, RetryPolicy(max_retry_seconds=10**7), fake, rand=lambda: next(draws))

    for index, started in enumerate(attempts):
        within_a_minute = [t for t in attempts[index:] if t < started + 60]
        assert len(within_a_minute) <= 10


def test_gives_up_when_next_delay_would_pass_the_budget():
    fake = FakeClock()
    # With rand=1.0: delays 0.5, 1, 2, 4 (total 7.5), then 8 would reach 15.5 > 10.
    operation = Flaky([HeapTransientError("HTTP 503 from Heap")] * 100)

    with pytest.raises(RetriesExhausted) as raised:
        run(operation, RetryPolicy(max_retry_seconds=10), fake, rand=lambda: 1.0)

    assert fake.sleeps == [0.5, 1.0, 2.0, 4.0]
    assert operation.calls == 5
    assert isinstance(raised.value.last_error, HeapTransientError)


def test_time_waiting_for_a_turn_is_not_retry_time_but_failed_attempts_are():
    fake = FakeClock()
    turns: list[float] = []

    def wait_turn() -> bool:  # the pacer: a minute before every attempt
        turns.append(fake.time)
        return fake.sleep(60.0)

    def slow_failure() -> None:  # each attempt takes 4 s, then fails
        fake.time += 4.0
        raise HeapTransientError("HTTP 500 from Heap")

    with pytest.raises(RetriesExhausted) as raised:
        call_with_retries(
            slow_failure,
            RetryPolicy(max_retry_seconds=20),
            fake,
            rand=lambda: 1.0,
            wait_turn=wait_turn,
        )

    # 4 s attempts and backoffs of 0.5, 1, 2: 4+0.5+4+1+4+2+4 = 19.5, and a backoff of 4 more
    # would pass 20; the four waits of 60 s for a turn count for nothing.
    assert [s for s in fake.sleeps if s != 60.0] == [0.5, 1.0, 2.0]
    assert len(turns) == 4
    assert "gave up after 4 attempts in 20 s" in str(raised.value)


def test_a_cancelled_wait_for_a_turn_raises_cancelled_before_any_attempt():
    operation = Flaky([])
    with pytest.raises(Cancelled):
        call_with_retries(
            operation, RetryPolicy(max_retry_seconds=60), FakeClock(), wait_turn=lambda: False
        )
    assert operation.calls == 0


def test_retry_after_beyond_the_budget_gives_up_without_waiting():
    fake = FakeClock()
    operation = Flaky([HeapTransientError("HTTP 429", retry_after=3600.0)])

    with pytest.raises(RetriesExhausted):
        run(operation, RetryPolicy(max_retry_seconds=600), fake)

    assert fake.sleeps == []
    assert operation.calls == 1


def test_delay_exactly_filling_the_budget_is_still_taken():
    fake = FakeClock()
    operation = Flaky([HeapTransientError("HTTP 429", retry_after=10.0)])

    assert run(operation, RetryPolicy(max_retry_seconds=10), fake) == "ok"
    assert fake.sleeps == [10.0]


def test_exhausted_message_names_last_error_and_no_item_data():
    fake = FakeClock()
    item = {"identity": "SECRET-USER-77", "event": "SECRET-EVENT"}
    errors = [HeapTransientError("HTTP 500 from Heap")] * 3 + [
        HeapTransientError("HTTP 503 from Heap", retry_after=999.0)
    ]
    flaky = Flaky(errors)
    sent: list[dict] = []

    def operation():  # like the batcher: the operation closes over the items it sends
        sent.append(item)
        return flaky()

    with pytest.raises(RetriesExhausted) as raised:
        run(operation, RetryPolicy(max_retry_seconds=60), fake)

    message = str(raised.value)
    assert "HTTP 503 from Heap" in message
    assert "HTTP 500" not in message
    assert "SECRET" not in message
    assert raised.value.last_error is errors[-1]
    assert len(sent) == 4


@pytest.mark.parametrize(
    "error",
    [HeapRejected(400, "bad body"), HeapConfigurationError("app_id", "HTTP 401")],
    ids=["rejected", "configuration"],
)
def test_non_transient_errors_propagate_without_retry(error):
    fake = FakeClock()
    operation = Flaky([error])

    with pytest.raises(type(error)) as raised:
        run(operation, RetryPolicy(max_retry_seconds=600), fake)

    assert raised.value is error
    assert operation.calls == 1
    assert fake.sleeps == []


def test_non_transient_error_after_transient_ones_propagates():
    fake = FakeClock()
    rejected = HeapRejected(422, "nope")
    operation = Flaky([HeapTransientError("HTTP 500"), rejected])

    with pytest.raises(HeapRejected):
        run(operation, RetryPolicy(max_retry_seconds=600), fake)

    assert operation.calls == 2
    assert len(fake.sleeps) == 1


def test_cancelled_sleep_raises_cancelled():
    fake = FakeClock(keep_going=False)
    operation = Flaky([HeapTransientError("HTTP 500")] * 5)

    with pytest.raises(Cancelled):
        run(operation, RetryPolicy(max_retry_seconds=600), fake)

    assert operation.calls == 1
    assert len(fake.sleeps) == 1


def test_on_retry_called_with_each_error_and_delay():
    fake = FakeClock()
    errors = [
        HeapTransientError("first", retry_after=3.0),
        HeapTransientError("second"),
        HeapTransientError("third", retry_after=1.5),
    ]
    seen: list[tuple[HeapTransientError, float]] = []

    run(
        Flaky(errors),
        RetryPolicy(max_retry_seconds=600, base_delay=0.5),
        fake,
        rand=lambda: 1.0,
        on_retry=lambda error, delay: seen.append((error, delay)),
    )

    # The third Retry-After (1.5 s) is shorter than that attempt's backoff (2 s): backoff wins.
    assert seen == [(errors[0], 3.0), (errors[1], 1.0), (errors[2], 2.0)]
    assert fake.sleeps == [3.0, 1.0, 2.0]
