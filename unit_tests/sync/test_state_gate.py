"""StateGate: states released once what they wait for is acknowledged, in input order per stream
(and globally for GLOBAL and legacy states), with destinationStats counted per state chunk."""

from __future__ import annotations

import json

import pytest

from destination_heap_analytics.counters import ChunkTally
from destination_heap_analytics.sync.state_gate import (
    EVERY_STREAM,
    HeldState,
    StateGate,
    destination_stats,
)
from unit_tests.builders import global_state, legacy_state, state_value, stream_state


class Acknowledging:
    """Stands in for a route's batcher: acknowledged up to `seq`, or raising `error`; batches
    beyond `seq` are still being sent unless `settling` (finished, a refusal settling)."""

    def __init__(self, seq: int = 0, settling: bool = False) -> None:
        self.seq = seq
        self.settling = settling
        self.error: Exception | None = None

    def acknowledged(self, raise_errors: bool = True) -> int:
        if self.error is not None and raise_errors:
            raise self.error
        return self.seq

    def sending_before(self, seq: int) -> bool:
        return seq > self.seq and not self.settling


def held(state, waits=(), tallies=(), key=None) -> HeldState:
    if key is None:
        key = state.stream if state.stream is not None else EVERY_STREAM
    return HeldState(state, list(waits), list(tallies), key)


def released_values(gate: StateGate, ending: bool = False) -> list[int]:
    return [state_value(line) for line in gate.release(ending)]


def test_a_state_waits_until_every_loader_it_depends_on_has_acknowledged():
    users, orders = Acknowledging(), Acknowledging()
    gate = StateGate()
    gate.hold(held(global_state(1), [(users, 2), (orders, 1)]))

    assert gate.release() == []
    users.seq = 2
    assert gate.release() == []
    orders.seq = 1
    assert released_values(gate) == [1]
    assert not gate.holding


def test_states_of_one_stream_leave_in_input_order():
    slow, fast = Acknowledging(), Acknowledging(seq=5)
    gate = StateGate()
    gate.hold(held(stream_state("users", 1), [(slow, 1)]))
    gate.hold(held(stream_state("users", 2), [(fast, 5)]))

    assert gate.release() == []
    slow.seq = 1
    assert released_values(gate) == [1, 2]


def test_states_of_different_streams_keep_input_order_while_batches_are_in_flight():
    slow, fast = Acknowledging(), Acknowledging(seq=5)
    gate = StateGate()
    gate.hold(held(stream_state("users", 1), [(slow, 1)]))
    gate.hold(held(stream_state("orders", 2), [(fast, 5)]))

    assert released_values(gate) == []
    slow.seq = 1
    assert released_values(gate) == [1, 2]


def test_a_stream_state_overtakes_another_streams_state_that_waits_for_a_refusal():
    settling, fast = Acknowledging(settling=True), Acknowledging(seq=5)
    gate = StateGate()
    gate.hold(held(stream_state("users", 1), [(settling, 1)]))
    gate.hold(held(stream_state("users", 2), [(fast, 5)]))
    gate.hold(held(stream_state("orders", 3), [(fast, 5)]))

    assert released_values(gate) == [3]  # users' states keep their own order
    settling.seq = 1
    assert released_values(gate) == [1, 2]


@pytest.mark.parametrize("make_state", [global_state, legacy_state], ids=["global", "legacy"])
def test_global_and_legacy_states_neither_overtake_nor_are_overtaken(make_state):
    slow, fast = Acknowledging(settling=True), Acknowledging(seq=5)
    gate = StateGate()
    gate.hold(held(stream_state("users", 1), [(slow, 1)]))
    gate.hold(held(make_state(2), [(fast, 5)]))
    gate.hold(held(stream_state("orders", 3), [(fast, 5)]))

    assert gate.release() == []
    slow.seq = 1
    assert released_values(gate) == [1, 2, 3]


def test_a_state_that_waits_for_nothing_leaves_at_once():
    gate = StateGate()
    gate.hold(held(stream_state("nothing_sent", 4)))
    assert released_values(gate) == [4]


def test_a_fatal_error_of_a_loader_is_raised_not_passed():
    failing = Acknowledging()
    failing.error = RuntimeError("batch failed")
    gate = StateGate()
    gate.hold(held(stream_state("users"), [(failing, 1)]))
    with pytest.raises(RuntimeError):
        gate.release()
    assert gate.holding


def test_when_the_sync_ends_on_an_error_the_ready_states_still_leave():
    failing, done = Acknowledging(seq=1), Acknowledging(seq=3)
    failing.error = RuntimeError("batch 2 failed")
    gate = StateGate()
    gate.hold(held(stream_state("users", 1), [(failing, 1)]))
    gate.hold(held(stream_state("users", 2), [(failing, 2)]))
    gate.hold(held(stream_state("orders", 3), [(done, 3)]))

    assert released_values(gate, ending=True) == [1, 3]  # 3 passes the state that never will
    assert gate.holding


def test_destination_stats_split_a_chunk_into_loaded_and_rejected():
    tallies = [ChunkTally(received=10, invalid=2, refused=3), ChunkTally(received=4)]
    stats = destination_stats(tallies)
    assert (stats.record_count, stats.rejected_count) == (9, 5)
    gate = StateGate()
    gate.hold(held(stream_state("users", 1), tallies=tallies))
    (line,) = gate.release()
    assert json.loads(line.line)["state"]["destinationStats"] == {
        "recordCount": 9.0,
        "rejectedRecordCount": 5.0,
    }


def test_a_dry_runs_gate_withholds_every_state_and_counts_it():
    gate = StateGate(withhold=True)
    gate.hold(held(stream_state("users")))
    gate.hold(held(global_state(), [(Acknowledging(9), 1)]))
    assert gate.release() == [] and not gate.holding
    assert gate.withheld == 2
