"""BatchDelivery: one batch sent, retried through transient errors, probed and split around
rejected items, and stopped when Heap refuses most of them."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_heap_analytics.config.settings import Pacing, RateLimit
from destination_heap_analytics.counters import (
    MAX_REJECTION_REASONS,
    OTHER_REJECTION_REASONS,
    DeliveryStats,
    Rejection,
)
from destination_heap_analytics.delivery.batch_delivery import Batch, BatchDelivery
from destination_heap_analytics.delivery.pacer import Pacer
from destination_heap_analytics.delivery.rejection_guard import (
    MIN_JUDGED,
    MIN_REFUSED,
    PROBES,
    RECENT_RECORDS,
    HeapRefusesMost,
    RejectionGuard,
)
from destination_heap_analytics.delivery.retry import Cancelled, RetriesExhausted, RetryPolicy
from destination_heap_analytics.heap.client import (
    HeapConfigurationError,
    HeapRejected,
    HeapTransientError,
    Receipt,
)
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
    ordering_key=None,
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
        ordering_key=ordering_key,
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


def identities(items: list[dict]) -> Counter:
    return Counter(item["identity"] for item in items)


def test_one_bad_item_in_1000_is_isolated_with_probes_and_logarithmic_requests():
    client = FakeClient(bad={"bad-user"})
    delivery, stats = make_delivery(client)
    batch = make_batch(1000, bad={637: "bad-user"})

    delivery.deliver(batch)

    good = [item for item in batch.items if item["identity"] != "bad-user"]
    assert identities(client.accepted) == identities(good)
    assert stats.delivered == 999
    assert stats.rejected.total() == 1
    assert [r.row for r in stats.take_new_rejections()] == [batch.rows[637]]
    assert stats.requests == len(client.posts)
    assert stats.requests <= 1 + PROBES + 1 + 2 * 10  # batch, probes, the rest, halving it
    probes = client.posts[1 : 1 + PROBES]
    assert all(len(post) == 1 for post in probes)
    assert len({batch.items.index(post[0]) * PROBES // 1000 for post in probes}) == PROBES


def test_after_the_probes_the_rest_is_split_in_input_order():
    client = FakeClient(bad={"bad-user"})
    delivery, _ = make_delivery(client)
    batch = make_batch(1000, bad={637: "bad-user"})

    delivery.deliver(batch)

    probes = [post[0] for post in client.posts[1 : 1 + PROBES]]
    rest = [item for item in client.accepted if item not in probes]
    positions = [batch.items.index(item) for item in rest]
    assert positions == sorted(positions)


def test_several_bad_items_each_rejected_once_and_every_good_item_delivered_once():
    bad = {0: "bad-a", 1: "bad-b", 30: "bad-c", 63: "bad-d"}
    client = FakeClient(bad=set(bad.values()))
    delivery, stats = make_delivery(client)
    batch = make_batch(64, bad=bad)

    delivery.deliver(batch)

    good = [i for i in batch.items if not i["identity"].startswith("bad-")]
    assert identities(client.accepted) == identities(good)
    assert stats.delivered == 60
    rejections = stats.take_new_rejections()
    assert [r.row for r in rejections] == [batch.rows[i] for i in sorted(bad)], "in row order"
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


# --- where the bad rows sit (issue 15) ---------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [range(10), range(20), range(0, 19, 2), range(990, 1000), range(0, 1000, 20)],
    ids=["rows 1-10", "20 at the head", "10 among the first 19", "at the tail", "every 20th"],
)
def test_a_few_bad_rows_anywhere_in_a_batch_are_skipped_and_the_rest_delivered(bad):
    batch = make_batch(1000, bad={i: f"bad-{i}" for i in bad})
    client = FakeClient(bad={f"bad-{i}" for i in bad})
    delivery, stats = make_delivery(client)

    delivery.deliver(batch)

    assert stats.delivered == 1000 - len(bad)
    assert sorted(r.row for r in stats.take_new_rejections()) == [batch.rows[i] for i in bad]


def test_a_batch_whose_probes_are_mostly_refused_is_sent_item_by_item():
    bad = {i: f"bad-{i}" for i in range(60)}  # 12 of the 20 strata: 12 refused probes
    client = FakeClient(bad=set(bad.values()))
    guard = RejectionGuard(min_refused=1000)  # observe the split, do not stop it
    delivery, stats = make_delivery(client, guard=guard)

    delivery.deliver(make_batch(100, bad=bad))

    assert (stats.delivered, stats.rejected.total()) == (40, 60)
    assert stats.requests == 1 + 100, "one request per item, where halving costs about two"


def by_identity(item: dict) -> str:
    return item["identity"]


@settings(max_examples=150, deadline=None)
@given(
    keys=st.lists(st.integers(0, 40), min_size=2, max_size=400),
    bad=st.sets(st.integers(0, 399), max_size=12),
)
def test_ordered_items_reach_heap_in_input_order_per_key_whatever_is_refused(keys, bad):
    """Last write wins: the accepted items of each identity keep their input order, through
    probes, the split, and item-by-item sending; every item is delivered or rejected once."""
    items = [{"identity": str(key), "n": n} for n, key in enumerate(keys)]
    refused = {n for n in bad if n < len(items)}
    client = RefusingByPosition(refused)
    delivery, stats = make_delivery(
        client, guard=RejectionGuard(min_refused=10**6), ordering_key=by_identity
    )

    delivery.deliver(Batch(seq=1, items=items, rows=list(range(1, len(items) + 1))))

    for key in set(keys):
        sent = [item["n"] for item in client.accepted if item["identity"] == str(key)]
        assert sent == sorted(sent)
    assert sorted(item["n"] for item in client.accepted) == sorted(set(range(len(items))) - refused)
    assert sorted(r.row - 1 for r in stats.take_new_rejections()) == sorted(refused)


class RefusingByPosition(FakeClient):
    def __init__(self, refused: set[int]) -> None:
        super().__init__()
        self.refused = refused

    def post(self, body: list[dict]) -> None:
        self.posts.append(body)
        if any(item["n"] in self.refused for item in body):
            raise HeapRejected(400, "identity is not allowed")
        self.accepted.extend(body)


# --- Heap refusing most records ------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 20, 21, 30, 100, 1000])
def test_batches_heap_refuses_entirely_stop_the_sync_after_a_bounded_number_of_requests(size):
    batch = make_batch(size, bad={i: f"bad-{i}" for i in range(size)})
    client = FakeClient(bad={item["identity"] for item in batch.items})
    delivery, stats = make_delivery(client)

    with pytest.raises(HeapRefusesMost) as raised:
        while True:
            delivery.deliver(batch)

    assert stats.requests <= 50, "README: at most 50 requests when everything is refused"
    if size >= MIN_JUDGED:  # the first batch, then refused probes until MIN_REFUSED
        assert stats.requests == 1 + MIN_REFUSED
    assert stats.delivered == 0
    assert "identity 'bad-" not in str(raised.value)


def test_a_guard_tripped_by_another_batch_stops_this_one_before_it_sends():
    guard = RejectionGuard()
    with pytest.raises(HeapRefusesMost):  # in another sending thread
        for _ in range(MIN_JUDGED):
            guard.refused(1, "HTTP 400")
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
    refused, clean = make_batch(10, bad={0: "bad-0"}), make_batch(RECENT_RECORDS - 1)

    delivery.deliver(refused)
    delivery.deliver(clean)
    assert delivery.settled(clean) and not delivery.settled(refused)

    delivery.deliver(make_batch(1))  # the refusal has now left the guard's recent records
    assert delivery.settled(refused)


def test_a_refused_batch_of_another_route_settles_as_this_route_loads():
    """One guard for the sync: records of any stream move the window."""
    guard = RejectionGuard()
    first, _ = make_delivery(FakeClient(bad={"bad-0"}), guard=guard)
    second, _ = make_delivery(FakeClient(), guard=guard)
    refused = make_batch(10, bad={0: "bad-0"})
    first.deliver(refused)

    second.deliver(make_batch(RECENT_RECORDS))

    assert first.settled(refused)


# --- deletions: receipts, a body fixed once built, refusals isolated within the same users --------


class DeletingClient(FakeClient):
    """A user deletion endpoint: answers a Receipt per accepted request, and keeps the exact
    body of every attempt."""

    def __init__(self, bad: set[str] = frozenset(), errors: list[Exception] | None = None):
        super().__init__(bad, errors)
        self.bodies: list[bytes] = []

    def body(self, items: list[dict]) -> bytes:
        return json.dumps({"users": items}).encode()

    def post(self, body: bytes) -> Receipt:
        self.bodies.append(body)
        super().post(json.loads(body)["users"])
        return Receipt(f"request-{len(self.accepted)}")


def users(count: int, bad: dict[int, str] | None = None) -> Batch:
    bad = bad or {}
    items = [{"identity": bad.get(i, f"user-{i}")} for i in range(count)]
    return Batch(1, items, list(range(1, count + 1)))


def test_each_accepted_deletion_request_leaves_its_receipt_and_size():
    client = DeletingClient()
    delivery, stats = make_delivery(client)
    delivery.deliver(users(3))
    delivery.deliver(users(2))

    taken = stats.take_new_receipts()
    assert [(a.receipt.deletion_request_id, a.items) for a in taken] == [
        ("request-3", 3),
        ("request-5", 2),
    ]
    assert stats.receipts == 2 and stats.take_new_receipts() == []


def test_a_retried_deletion_sends_the_same_bytes_every_time():
    client = DeletingClient(errors=[HeapTransientError("HTTP 503"), HeapTransientError("x")])
    delivery, stats = make_delivery(client)
    delivery.deliver(users(4))

    assert len(client.bodies) == 3 and len(set(client.bodies)) == 1
    assert stats.delivered == 4 and stats.receipts == 1


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 300).flatmap(
        lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1), max_size=5))
    )
)
def test_a_refused_deletion_is_isolated_by_sending_only_its_own_users(case):
    """Every request after a refusal names a subset of the refused request's users, each user
    is accepted once at most, and only the users Heap refuses stay undeleted."""
    count, bad_positions = case
    batch = users(count, {i: f"bad-{i}" for i in bad_positions})
    asked = [item["identity"] for item in batch.items]
    client = DeletingClient(bad={f"bad-{i}" for i in bad_positions})
    delivery, stats = make_delivery(client, guard=RejectionGuard())
    delivery.deliver(batch)

    for posted in client.posts:
        names = [item["identity"] for item in posted]
        assert set(names) <= set(asked) and len(names) == len(set(names))
    deleted = [item["identity"] for item in client.accepted]
    assert sorted(deleted) == sorted(a for a in asked if not a.startswith("bad-"))
    assert stats.rejected.total() == len(bad_positions)
    assert sum(a.items for a in stats.take_new_receipts()) == len(deleted)
