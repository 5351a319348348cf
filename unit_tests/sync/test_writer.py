"""HeapWriter over fake HTTP clients: states held until acknowledged (per stream and global, in
input order), per-stream batches, invalid and ignored records, rejections, summary and progress.
The client fake blocks chosen identities until the test releases them, so every interleaving is
set up with events, not timing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from airbyte_cdk.models import (
    AirbyteMessage,
    AirbyteMessageSerializer,
    Level,
    Type,
)

from destination_heap_analytics.counters import InputStats
from destination_heap_analytics.heap.client import HeapRejected
from destination_heap_analytics.protocol.state_message import EmittedState
from destination_heap_analytics.sync.sync_log import PROGRESS_INTERVAL_SECONDS
from destination_heap_analytics.sync.writer import PROGRESS_CHECK_EVERY, HeapWriter
from unit_tests.builders import (
    emitted,
    global_state,
    heap_config,
    make_catalog,
    record,
    state_value,
    stream_state,
)
from unit_tests.fakes import FakeClock

WAIT = 5.0
"""Upper bound for something the test expects to happen (it normally happens at once)."""


class FakeHeap:
    """A client factory whose clients record what Heap would accept. A post holding an identity
    in `held` waits until `release(identity)`; one holding an identity in `refused` gets a 400."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, list[dict]]] = []
        self.refused: set[str] = set()
        self._gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def hold(self, *identities: str) -> None:
        for identity in identities:
            self._gates[identity] = threading.Event()

    def release(self, identity: str) -> None:
        self._gates[identity].set()

    def release_all(self) -> None:
        for gate in self._gates.values():
            gate.set()

    def accepted(self) -> list[str]:
        with self._lock:
            return [item["identity"] for _, items in self.posts for item in items]

    def __call__(self, endpoint_url: str, app_id: str, bulk_key: str | None, **_) -> FakeClient:
        return FakeClient(self, endpoint_url.rsplit("/", 1)[1])


class FakeClient:
    def __init__(self, heap: FakeHeap, api: str) -> None:
        self._heap = heap
        self._api = api

    def body(self, items: list[dict]) -> list[dict]:
        return list(items)

    def post(self, body: list[dict]) -> None:
        identities = {item["identity"] for item in body}
        for identity in identities:
            gate = self._heap._gates.get(identity)
            if gate is not None:
                assert gate.wait(WAIT), f"{identity} was never released"
        if identities & self._heap.refused:
            raise HeapRejected(400, "events properties")
        with self._heap._lock:
            self._heap.posts.append((self._api, body))

    def close(self) -> None:
        pass


def logs(messages: list, level: Level | None = None) -> list[str]:
    return [
        m.log.message
        for m in messages
        if m.__class__ is AirbyteMessage
        and m.type == Type.LOG
        and (level is None or m.log.level == level)
    ]


def states(messages: list) -> list[dict]:
    return [emitted(m) for m in messages if m.__class__ is EmittedState]


def values(messages: list) -> list[int]:
    return [state_value(m) for m in messages if m.__class__ is EmittedState]


def record_counts(messages: list) -> list[float]:
    return [s["destinationStats"]["recordCount"] for s in states(messages)]


class Sync:
    """A writer on fake Heap and a fake clock, with helpers to feed it and read what it said."""

    def __init__(
        self, heap: FakeHeap | Callable, streams: tuple[str, ...], **config: object
    ) -> None:
        """`heap` makes the clients (a FakeHeap, or any client factory)."""
        self.heap = heap
        self.clock = FakeClock()
        settings = heap_config(**config)
        self.writer = HeapWriter.start(
            settings, make_catalog(*streams), InputStats(), self.clock, client_factory=heap
        )
        self.output: list[AirbyteMessage] = []

    def feed(self, *messages: AirbyteMessage) -> list[AirbyteMessage]:
        for message in messages:
            self.writer.process(message)
        return self.read()

    def read(self) -> list[AirbyteMessage]:
        taken = self.writer.take_output()
        self.output += taken
        return taken

    def until_state(self, value: int) -> list[int]:
        """Every state released so far, once one with `value` is out: ignored records are fed
        meanwhile, as a real source would keep sending (event-gated, no sleep)."""
        for _ in range(1_000_000):
            if value in values(self.output):
                return values(self.output)
            self.feed(record("x", stream="elsewhere"))
        raise AssertionError(f"state {value} never released; got {values(self.output)}")

    def finish(self) -> list[AirbyteMessage]:
        self.writer.finish()
        return self.read()


@pytest.fixture
def heap() -> Iterator[FakeHeap]:
    fake = FakeHeap()
    yield fake
    fake.release_all()


@pytest.fixture
def sync(heap) -> Iterator[callable]:
    made: list[Sync] = []

    def make(*streams: str, **config: object) -> Sync:
        made.append(Sync(heap, streams or ("users",), **config))
        return made[-1]

    yield make
    heap.release_all()
    for each in made:
        each.writer.stop()
        each.writer.close()


# --- states -------------------------------------------------------------------------------


def test_state_is_held_until_its_records_are_acknowledged(heap, sync):
    heap.hold("u2")
    run = sync()
    assert states(run.feed(record("u1"), record("u2"), stream_state("users", 1))) == []
    assert heap.accepted() == []

    heap.release("u2")
    (released,) = states(run.finish())
    assert released["stream"]["stream_state"]["v"] == 1
    assert released["destinationStats"] == {"recordCount": 2.0, "rejectedRecordCount": 0.0}
    assert heap.accepted() == ["u1", "u2"]


def test_state_without_pending_records_is_released_at_once(sync):
    (released,) = states(sync().feed(stream_state("users", 5)))
    assert released["stream"]["stream_state"]["v"] == 5
    assert released["destinationStats"]["recordCount"] == 0


def test_state_is_not_released_while_its_own_batch_is_in_flight(heap, sync):
    heap.hold("u2")
    run = sync()
    run.feed(record("u1"), stream_state("users", 1), record("u2"), stream_state("users", 2))
    assert run.until_state(1) == [1]
    assert heap.accepted() == ["u1"]

    heap.release("u2")
    assert values(run.finish()) == [2]


def test_states_come_out_in_input_order_with_their_own_counts(sync):
    run = sync()
    run.feed(record("u1"), stream_state("users", 1), record("u2"), record("u3"))
    run.feed(stream_state("users", 2))
    run.finish()

    assert values(run.output) == [1, 2]
    assert record_counts(run.output) == [1, 2]
    assert run.writer.stats.states_emitted == 2
    assert run.writer.stats.delivered == 3


# --- several streams ------------------------------------------------------------------------


def test_a_stream_state_waits_only_for_its_own_streams_records(heap, sync):
    heap.hold("slow-user")
    run = sync("users", "orders")
    run.feed(record("slow-user", "users"), record("o1", "orders"))
    run.feed(stream_state("orders", 1))

    assert run.until_state(1) == [1]  # the users batch is still held
    assert heap.accepted() == ["o1"]
    heap.release("slow-user")
    run.finish()


def test_a_global_state_waits_for_every_stream(heap, sync):
    heap.hold("slow-order")
    run = sync("users", "orders")
    run.feed(record("u1", "users"), record("slow-order", "orders"), global_state(7))
    assert states(run.read()) == []
    run.feed(record("u2", "users"), stream_state("users", 8))
    assert values(run.read()) == []  # input order: the users state waits behind the global one

    heap.release("slow-order")
    run.finish()
    assert values(run.output) == [7, 8]
    assert record_counts(run.output) == [2, 1]


def test_records_of_different_streams_never_share_a_batch(heap, sync):
    run = sync("users", "orders", batch_size=10)
    for n in range(6):
        run.feed(record(f"u{n}", "users"), record(f"o{n}", "orders"))
    run.finish()

    batches = [sorted({item["identity"][0] for item in items}) for _, items in heap.posts]
    assert sorted(batches) == [["o"], ["u"]]
    assert sorted(heap.accepted()) == sorted(
        [f"u{n}" for n in range(6)] + [f"o{n}" for n in range(6)]
    )


def test_each_stream_is_counted_on_its_own(heap, sync):
    heap.refused.add("bad")
    run = sync("users", "orders")
    run.feed(record("u1", "users"), record("bad", "orders"), record("o2", "orders"))
    run.feed(record("", "orders"))
    run.finish()

    users, orders = run.writer.stats.routes
    assert (users.records, users.delivery.delivered) == (1, 1)
    assert (orders.records, orders.delivery.delivered, orders.delivery.rejected.total()) == (
        3,
        1,
        1,
    )
    assert orders.invalid == {"user is blank": 1}
    lines = logs(run.writer.summary())
    assert lines[0] == "Total Messages: 4. Total Records: 4. Total loaded: 2."
    assert lines[3].startswith("Stream 'orders' (track): 3 records, 1 loaded, invalid 1")


# --- records ----------------------------------------------------------------------------------


def test_invalid_record_is_logged_by_row_and_reason_and_not_sent(heap, sync):
    run = sync()
    run.feed(
        record("u1"),
        AirbyteMessageSerializer.load(
            {
                "type": "RECORD",
                "record": {"stream": "users", "data": {"event": "e"}, "emitted_at": 1},
            }
        ),
    )
    run.finish()

    assert logs(run.output, Level.WARN) == ["Row 2 skipped as invalid: user is missing or null."]
    assert heap.accepted() == ["u1"]
    assert run.writer.stats.invalid == {"user is missing or null": 1}


def test_stream_not_in_catalog_is_warned_about_once_and_counted(heap, sync):
    run = sync()
    run.feed(*[record("u1", stream="orders")] * 3)
    run.finish()

    (warning,) = logs(run.output, Level.WARN)
    assert "'orders' is not in the configured catalog" in warning
    assert run.writer.stats.ignored_streams == {"orders": 3}
    assert heap.posts == []


def test_rejected_row_is_logged_with_its_row_number(heap, sync):
    heap.refused.add("u2")
    run = sync()
    run.feed(record("u1"), record("u2"), record("u3"))
    run.finish()

    assert logs(run.output, Level.WARN) == ["Row 2 rejected by Heap (HTTP 400: events properties)."]
    assert sorted(heap.accepted()) == ["u1", "u3"]


def test_summary_has_the_totals_line_then_the_summary_line(sync):
    run = sync()
    run.feed(stream_state("users", 1), record("u1"), record(""))
    run.finish()

    totals, summary = logs(run.writer.summary())

    assert totals == "Total Messages: 3. Total Records: 2. Total loaded: 1."
    assert summary.startswith("Sync summary: invalid records skipped: 1 (")


# --- the progress line ------------------------------------------------------------------------


def progress_lines(messages: list[AirbyteMessage]) -> list[str]:
    return [line for line in logs(messages) if line.startswith("Progress: ")]


def test_progress_line_is_checked_on_states_and_while_records_stream(sync):
    run = sync()
    run.clock.time += PROGRESS_INTERVAL_SECONDS - 0.1
    assert progress_lines(run.feed(stream_state("users"))) == []

    run.clock.time += 0.1
    assert len(progress_lines(run.feed(stream_state("users")))) == 1

    run.clock.time += PROGRESS_INTERVAL_SECONDS
    fed = run.feed(*[record(f"u{n}") for n in range(PROGRESS_CHECK_EVERY)])
    (line,) = progress_lines(fed)
    assert line.startswith(f"Progress: {PROGRESS_CHECK_EVERY} records read, ")
    run.finish()


# --- dry run ------------------------------------------------------------------------------------


def test_a_dry_run_creates_no_client_emits_no_state_and_counts_what_it_would_send(heap):
    made: list[str] = []

    def never(*args, **kwargs):
        made.append("client")
        raise AssertionError("a dry run must not create an HTTP client")

    run = Sync(never, ("users", "orders"), dry_run=True, batch_size=2)
    run.feed(record("u1"), record("u2"), record("u3"), stream_state("users", 1))
    run.feed(record("o1", "orders"), record("", "orders"), global_state(2))
    run.finish()

    assert made == [] and heap.posts == []
    assert states(run.output) == []
    lines = logs(run.output) + logs(run.writer.summary())
    assert lines[0].startswith("Dry run: records are read, checked and transformed")
    assert "Total Messages: 7. Total Records: 5. Total loaded: 0." in lines
    assert "Dry run: would load 4 items in 3 requests." in lines
    (users,) = [line for line in lines if line.startswith("Dry run, stream 'users'")]
    assert "3 records, would load 3 items in 2 requests" in users
    assert "Item 1: identity: text(2), event: text(1)" in users
    assert lines[-1].endswith("(2 states withheld).")
    run.writer.close()
