"""BatchDelivery: one batch sent, retried through transient errors, split around rejected items."""

from __future__ import annotations

import pytest

from destination_heap_analytics.client import (
    HeapConfigurationError,
    HeapRejected,
    HeapTransientError,
)
from destination_heap_analytics.config import Pacing, RateLimit
from destination_heap_analytics.delivery import (
    MAX_REJECTION_REASONS,
    OTHER_REJECTION_REASONS,
    Batch,
    BatchDelivery,
    DeliveryStats,
    Rejection,
)
from destination_heap_analytics.pacer import Pacer
from destination_heap_analytics.rejection_guard import (
    MIN_REFUSED,
    RECENT_RECORDS,
    HeapRefusesMost,
    RejectionGuard,
)
from destination_heap_analytics.retry import Cancelled, RetriesExhausted, RetryPolicy
from unit_tests.fakes import FakeClock


class FakeClient:
    """Refuses (400) any body holding a bad item, with a message as the real client gives it
    (already reduced to vocabulary words, so it names the field and never the value).

    `errors` are raised by the first posts, in turn, before any body is looked at.
    """

    def __init__(self, bad: set[str] = frozenset(), errors: list[Exception] | None = None):
        self.bad = set(bad)
        self.errors = list(errors or [])
        self.posts: list[list[dict]] = []
        self.accepted: list[dict] = []

    def body(self, items: list[dict]) -> list[dict]:
        return list(items)

    def post(self, body: list[dict]) -> None:
        self.posts.append(body)
        if self.errors:
            raise self.errors.pop(0)
        refused = [item for item in body if item["identity"] in self.bad]
        if refused:
            raise HeapRejected(400, "identity is not allowed")
        self.accepted.extend(body)


def make_delivery(
    client: FakeClient,
    sleep: FakeClock | None = None,
    pacer: Pacer | None = None,
    max_retry_seconds: float = 60,
    guard: RejectionGuard | None = None,
) -> tuple[BatchDelivery, DeliveryStats]:
    sleep = sleep if sleep is not None else FakeClock()
    stats = DeliveryStats()
    delivery = BatchDelivery(
        client,
        pacer if pacer is not None else Pacer(Pacing(None, None), sleep),
        RetryPolicy(max_retry_seconds),
        stats,
        sleep,
        guard=guard,
    )
    return delivery, stats


def make_batch(count: int, bad: dict[int, str] | None = None, first_row: int = 101) -> Batch:
    """Items `user-<i>`, except the indexes in `bad`, which get the given identity."""
    bad = bad or {}
    items = [{"identity": bad.get(i, f"user-{i}"), "event": "e"} for i in range(count)]
    return Batch(seq=1, items=items, rows=list(range(first_row, first_row + count)))


# --- success ----------------------------------------------------------------------------------


def test_success_counts_items_delivered_and_one_request():
    client = FakeClient()
    delivery, stats = make_delivery(client)
    batch = make_batch(5)

    delivery.deliver(batch)

    assert client.posts == [batch.items]
    assert stats.delivered == 5
    assert stats.requests == 1
    assert stats.rejected.total() == 0
    assert stats.take_new_rejections() == []


def test_counts_add_up_over_batches():
    delivery, stats = make_delivery(FakeClient())

    delivery.deliver(make_batch(3))
    delivery.deliver(make_batch(4))

    assert (stats.delivered, stats.requests) == (7, 2)


# --- rejected items ---------------------------------------------------------------------------


def test_one_bad_item_in_1000_is_isolated_with_logarithmic_requests():
    client = FakeClient(bad={"bad-user"})
    delivery, stats = make_delivery(client)
    batch = make_batch(1000, bad={637: "bad-user"})

    delivery.deliver(batch)

    good = [item for item in batch.items if item["identity"] != "bad-user"]
    assert client.accepted == good
    assert stats.delivered == 999
    assert stats.rejected.total() == 1
    assert [r.row for r in stats.take_new_rejections()] == [batch.rows[637]]
    assert stats.requests == len(client.posts)
    assert stats.requests <= 21


def test_several_bad_items_each_rejected_once_and_every_good_item_delivered_once():
    bad = {0: "bad-a", 1: "bad-b", 30: "bad-c", 63: "bad-d"}
    client = FakeClient(bad=set(bad.values()))
    delivery, stats = make_delivery(client)
    batch = make_batch(64, bad=bad)

    delivery.deliver(batch)

    assert client.accepted == [i for i in batch.items if not i["identity"].startswith("bad-")]
    assert stats.delivered == 60
    rejections = stats.take_new_rejections()
    assert sorted(r.row for r in rejections) == [batch.rows[i] for i in sorted(bad)]
    assert all(r.status == 400 for r in rejections)
    assert stats.rejected.total() == 4


def test_a_batch_of_only_bad_items_delivers_nothing():
    client = FakeClient(bad={"bad-x"})
    delivery, stats = make_delivery(client)

    delivery.deliver(make_batch(4, bad={i: "bad-x" for i in range(4)}))

    assert stats.delivered == 0
    assert stats.rejected.total() == 4
    assert client.accepted == []


def test_a_single_bad_item_is_rejected_with_one_request():
    client = FakeClient(bad={"bad-x"})
    delivery, stats = make_delivery(client)

    delivery.deliver(make_batch(1, bad={0: "bad-x"}, first_row=9))

    assert stats.requests == 1
    assert [r.row for r in stats.take_new_rejections()] == [9]


def test_take_new_rejections_returns_each_rejection_once():
    client = FakeClient(bad={"bad-1", "bad-2"})
    delivery, stats = make_delivery(client)
    delivery.deliver(make_batch(2, bad={0: "bad-1"}, first_row=1))
    assert [r.row for r in stats.take_new_rejections()] == [1]

    delivery.deliver(make_batch(2, bad={1: "bad-2"}, first_row=3))

    assert [r.row for r in stats.take_new_rejections()] == [4]
    assert stats.take_new_rejections() == []
    assert stats.rejected.total() == 2


def test_the_rejected_items_message_is_counted_as_the_client_described_it():
    client = FakeClient(bad={"bad-1"})
    delivery, stats = make_delivery(client)

    delivery.deliver(make_batch(8, bad={5: "bad-1"}))

    (rejection,) = stats.take_new_rejections()
    assert rejection == Rejection(row=106, status=400, message="identity is not allowed")
    assert stats.rejected == {"HTTP 400: identity is not allowed": 1}


def test_distinct_rejection_messages_are_bounded_in_variety():
    stats = DeliveryStats()
    messages = [f"message {n}" for n in range(MAX_REJECTION_REASONS + 5)]

    for row, message in enumerate(messages * 2, start=1):
        stats.count_rejection(Rejection(row, 400, message))

    other = f"HTTP 400: {OTHER_REJECTION_REASONS}"
    assert len(stats.rejected) == MAX_REJECTION_REASONS + 1
    assert stats.rejected[other] == 2 * 5
    assert all(stats.rejected[f"HTTP 400: {m}"] == 2 for m in messages[:MAX_REJECTION_REASONS])
    taken = stats.take_new_rejections()
    assert [r.row for r in taken] == list(range(1, 2 * len(messages) + 1))
    assert {r.message for r in taken} == set(messages[:MAX_REJECTION_REASONS]) | {
        OTHER_REJECTION_REASONS
    }
    assert stats.rejected.total() == 2 * len(messages)


# --- transient errors -------------------------------------------------------------------------


def test_transient_errors_are_retried_and_counted():
    client = FakeClient(errors=[HeapTransientError("HTTP 503 from Heap")] * 2)
    sleep = FakeClock()
    delivery, stats = make_delivery(client, sleep=sleep)

    delivery.deliver(make_batch(3))

    assert stats.delivered == 3
    assert stats.requests == 3
    assert stats.retries == 2
    assert stats.retry_reasons == {"HTTP 503 from Heap": 2}
    assert len(sleep.sleeps) == 2


def test_retry_waits_as_long_as_retry_after_says():
    client = FakeClient(errors=[HeapTransientError("HTTP 429 from Heap", retry_after=7.0)])
    sleep = FakeClock()
    delivery, _ = make_delivery(client, sleep=sleep)

    delivery.deliver(make_batch(1))

    assert sleep.sleeps == [7.0]


def test_transient_error_while_splitting_is_retried_without_losing_items():
    client = FakeClient(bad={"bad-x"})
    delivery, stats = make_delivery(client)
    batch = make_batch(4, bad={3: "bad-x"})
    original_post = client.post
    calls = 0

    def flaky_post(body: list[dict]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first half, right after the split
            raise HeapTransientError("connection failed (ConnectionResetError)")
        original_post(body)

    client.post = flaky_post  # type: ignore[method-assign]

    delivery.deliver(batch)

    assert stats.delivered == 3
    assert stats.rejected.total() == 1
    assert stats.retries == 1


def test_retries_exhausted_propagates():
    client = FakeClient(errors=[HeapTransientError("HTTP 500 from Heap", retry_after=5.0)])
    delivery, stats = make_delivery(client, max_retry_seconds=1)

    with pytest.raises(RetriesExhausted):
        delivery.deliver(make_batch(2))
    assert stats.delivered == 0


# --- fatal outcomes ---------------------------------------------------------------------------


def test_configuration_error_propagates_and_nothing_is_counted_as_delivered():
    client = FakeClient(errors=[HeapConfigurationError("app_id", "HTTP 401")])
    delivery, stats = make_delivery(client)

    with pytest.raises(HeapConfigurationError) as raised:
        delivery.deliver(make_batch(3))

    assert raised.value.field == "app_id"
    assert stats.delivered == 0
    assert stats.rejected.total() == 0
    assert len(client.posts) == 1


def test_configuration_error_while_splitting_propagates():
    client = FakeClient(bad={"bad-x"})
    original_post = client.post

    def post(body: list[dict]) -> None:
        if len(client.posts) == 1:  # the first request after the split
            client.posts.append(body)
            raise HeapConfigurationError("base_url", "HTTP 404")
        original_post(body)

    client.post = post  # type: ignore[method-assign]
    delivery, _ = make_delivery(client)

    with pytest.raises(HeapConfigurationError):
        delivery.deliver(make_batch(4, bad={0: "bad-x"}))


def test_waiting_for_the_rate_limit_does_not_spend_the_retry_budget():
    """Issue 14.10: at 1000 items a minute, the second batch of 1000 waits about a minute for
    its turn; a single 500 then must still be retried within a 30 s budget."""
    clock = FakeClock()
    pacer = Pacer(Pacing(RateLimit(1000, 60.0), None), clock)
    client = FakeClient()
    delivery, stats = make_delivery(client, sleep=clock, pacer=pacer, max_retry_seconds=30)
    delivery.deliver(make_batch(1000))
    client.errors = [HeapTransientError("HTTP 500 from Heap")]
    started = clock.now()

    delivery.deliver(make_batch(1000, first_row=1101))

    assert clock.now() - started > 60, "the batch waited for the pacer first"
    assert stats.delivered == 2000
    assert stats.retries == 1
    assert pacer.waited_seconds > 60


def test_the_retry_budget_still_ends_a_batch_that_keeps_failing_after_its_turn():
    clock = FakeClock()
    pacer = Pacer(Pacing(RateLimit(1000, 60.0), None), clock)
    client = FakeClient()
    delivery, stats = make_delivery(client, sleep=clock, pacer=pacer, max_retry_seconds=30)
    delivery.deliver(make_batch(1000))
    client.errors = [HeapTransientError("HTTP 500 from Heap")] * 100

    with pytest.raises(RetriesExhausted):
        delivery.deliver(make_batch(1000, first_row=1101))

    retry_sleeps = [s for s in clock.sleeps if s <= 30]
    assert 0 < sum(retry_sleeps) <= 30
    assert stats.delivered == 1000


def test_cancelled_when_the_pacers_sleep_says_cancelled():
    client = FakeClient()
    cancelled_sleep = FakeClock(keep_going=False)
    pacer = Pacer(Pacing(RateLimit(1, 60.0), None), cancelled_sleep)
    delivery, stats = make_delivery(client, pacer=pacer)
    delivery.deliver(make_batch(1))

    with pytest.raises(Cancelled):
        delivery.deliver(make_batch(1))

    assert len(cancelled_sleep.sleeps) == 1
    assert len(client.posts) == 1
    assert stats.requests == 1


def test_cancelled_when_the_retry_sleep_says_cancelled():
    client = FakeClient(errors=[HeapTransientError("HTTP 500 from Heap")] * 5)
    delivery, stats = make_delivery(client, sleep=FakeClock(keep_going=False))

    with pytest.raises(Cancelled):
        delivery.deliver(make_batch(2))

    assert len(client.posts) == 1
    assert stats.delivered == 0


# --- Heap refusing most records ------------------------------------------------------------


@pytest.mark.parametrize("size", [100, 1000])
def test_a_batch_heap_refuses_entirely_stops_the_sync_after_a_bounded_number_of_requests(size):
    batch = make_batch(size, bad={i: f"bad-{i}" for i in range(size)})
    client = FakeClient(bad={item["identity"] for item in batch.items})
    delivery, stats = make_delivery(client)

    with pytest.raises(HeapRefusesMost) as raised:
        delivery.deliver(batch)

    assert stats.rejected.total() == MIN_REFUSED
    assert stats.requests <= 2 * MIN_REFUSED + size.bit_length()  # not ~2 per record
    assert "identity 'bad-" not in str(raised.value)


def test_a_guard_tripped_by_another_batch_stops_this_one_before_it_sends():
    guard = RejectionGuard()
    for _ in range(MIN_REFUSED):
        guard.refused("HTTP 400")
    client = FakeClient()
    delivery, stats = make_delivery(client, guard=guard)

    with pytest.raises(HeapRefusesMost):
        delivery.deliver(make_batch(5))

    assert client.posts == []


def test_a_run_of_bad_rows_below_the_rule_is_isolated_as_before():
    bad = {i: f"bad-{i}" for i in (0, 1, 2, 3, 500, 999)}
    client = FakeClient(bad=set(bad.values()))
    delivery, stats = make_delivery(client)

    delivery.deliver(make_batch(1000, bad=bad))

    assert (stats.delivered, stats.rejected.total()) == (994, 6)


def test_states_after_a_refused_record_wait_until_the_refusal_is_settled():
    client = FakeClient(bad={"bad-0"})
    delivery, _ = make_delivery(client)
    refused, clean = make_batch(10, bad={0: "bad-0"}), make_batch(RECENT_RECORDS - 10)

    delivery.deliver(refused)
    delivery.deliver(clean)
    assert delivery.settled(clean) and not delivery.settled(refused)

    delivery.deliver(make_batch(1))  # the refusal has now left the guard's recent records
    assert delivery.settled(refused)
