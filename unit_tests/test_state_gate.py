"""StateGate and StateCounter: states released in input order once what they wait for is
acknowledged; destinationStats counts per state chunk."""

from __future__ import annotations

import pytest
from airbyte_cdk.models import AirbyteMessage

from destination_heap_analytics.state_gate import StateCounter, StateGate, stream_of
from unit_tests.builders import global_state, legacy_state, stream_state


class Acknowledging:
    """Stands in for a route's loader: acknowledged up to `seq`, or raising `error`."""

    def __init__(self, seq: int = 0) -> None:
        self.seq = seq
        self.error: Exception | None = None

    def acknowledged(self) -> int:
        if self.error is not None:
            raise self.error
        return self.seq


# --- StateGate --------------------------------------------------------------------------------


def test_a_state_waits_until_every_loader_it_depends_on_has_acknowledged():
    users, orders = Acknowledging(), Acknowledging()
    gate = StateGate()
    state = global_state(1)
    gate.hold(state, [(users, 2), (orders, 1)])

    assert gate.release() == []
    users.seq = 2
    assert gate.release() == []
    orders.seq = 1
    assert gate.release() == [state]
    assert not gate.holding


def test_states_leave_in_input_order_even_when_a_later_one_is_ready_first():
    slow, fast = Acknowledging(), Acknowledging(seq=5)
    gate = StateGate()
    first, second = stream_state("users", 1), stream_state("orders", 2)
    gate.hold(first, [(slow, 1)])
    gate.hold(second, [(fast, 5)])

    assert gate.release() == []
    slow.seq = 1
    assert gate.release() == [first, second]


def test_a_state_that_waits_for_nothing_leaves_at_once():
    gate = StateGate()
    state = stream_state("nothing_sent")
    gate.hold(state, [])
    assert gate.release() == [state]


def test_a_fatal_error_of_a_loader_is_raised_not_passed():
    failing = Acknowledging()
    failing.error = RuntimeError("batch failed")
    gate = StateGate()
    gate.hold(stream_state("users"), [(failing, 1)])
    with pytest.raises(RuntimeError):
        gate.release()
    assert gate.holding


def test_stream_of_names_stream_states_only():
    assert stream_of(stream_state("users", namespace="shop").state) == ("shop", "users")
    assert stream_of(global_state().state) is None
    assert stream_of(legacy_state().state) is None


# --- StateCounter -----------------------------------------------------------------------------


class Counted:
    """A StateCounter fed as the writer feeds it: each record counted, the running total given."""

    def __init__(self) -> None:
        self.counter = StateCounter()
        self.records = 0

    def count(self, *streams: tuple[str | None, str]) -> None:
        for stream in streams:
            self.records += 1
            self.counter.count(stream)

    def take(self, message: AirbyteMessage) -> int:
        return self.counter.take(message.state, self.records)


def test_stream_state_counts_the_records_of_its_own_stream():
    counted = Counted()
    counted.count(*[(None, "users")] * 3, *[(None, "orders")] * 2)

    assert counted.take(stream_state("users")) == 3
    assert counted.take(stream_state("orders")) == 2
    assert counted.take(stream_state("users")) == 0


def test_stream_state_count_restarts_after_each_state():
    counted = Counted()
    counted.count((None, "users"))
    counted.take(stream_state("users"))
    counted.count((None, "users"), (None, "users"))

    assert counted.take(stream_state("users")) == 2


def test_stream_state_matches_the_namespace():
    counted = Counted()
    counted.count(("shop", "users"), ("shop", "users"), (None, "users"))

    assert counted.take(stream_state("users", namespace="shop")) == 2
    assert counted.take(stream_state("users")) == 1


@pytest.mark.parametrize("make_state", [global_state, legacy_state], ids=["global", "legacy"])
def test_global_and_legacy_states_count_every_record_since_the_last_state(make_state):
    counted = Counted()
    counted.count((None, "users"), (None, "orders"), ("shop", "users"))

    assert counted.take(make_state()) == 3
    counted.count((None, "orders"))
    assert counted.take(make_state()) == 1
    assert counted.take(make_state()) == 0


def test_a_dry_runs_gate_withholds_every_state_and_counts_it():
    gate = StateGate(withhold=True)
    gate.hold(stream_state("users"), [])
    gate.hold(global_state(), [(Acknowledging(9), 1)])
    assert gate.release() == [] and not gate.holding
    assert gate.withheld == 2
