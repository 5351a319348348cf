"""RejectionGuard: a sync ends when Heap refuses at least half of what it judges, never because
of where a few bad rows sit. The guard is checked against a plain model of the rule (every
entry recomputed from scratch), its probes against their promise (spread, reproducible, never
ahead of an earlier item of their key), and whole syncs on a fake Heap against the README's
numbers (generated refusal patterns, batch sizes, concurrency and streams)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_heap_analytics.counters import InputStats
from destination_heap_analytics.delivery.rejection_guard import (
    ASSUMED_ACCEPTED_PROBES,
    MIN_JUDGED,
    MIN_REFUSED,
    PROBES,
    RECENT_RECORDS,
    HeapRefusesMost,
    Judgement,
    RejectionGuard,
    probe_positions,
)
from destination_heap_analytics.delivery.senders import SenderPool
from destination_heap_analytics.mapping.transformer import stream_key
from destination_heap_analytics.protocol.state_message import EmittedState
from destination_heap_analytics.sync.routes import Routes, ToHeap
from destination_heap_analytics.sync.writer import HeapWriter
from unit_tests.builders import (
    emitted,
    heap_config,
    make_catalog,
    record,
    state_value,
    stream_state,
)
from unit_tests.fakes import FakeClock, RefusingHeap

REASON = "HTTP 400: properties should be object"


def refuse_alone(guard: RejectionGuard, times: int) -> None:
    """Batches of one record, each refused."""
    for _ in range(times):
        guard.refused(1, REASON).finished()


def tripped(guard: RejectionGuard) -> bool:
    try:
        guard.check()
    except HeapRefusesMost:
        return True
    return False


def trips(report: Callable[[], object]) -> HeapRefusesMost:
    """The report that tips the balance raises, in the thread that made it."""
    with pytest.raises(HeapRefusesMost) as raised:
        report()
    return raised.value


# --- the rule on exact evidence ---------------------------------------------------------------


def test_refusals_alone_trip_the_guard_once_half_of_the_minimum_judged_are_refused():
    guard = RejectionGuard()
    refuse_alone(guard, MIN_REFUSED)
    assert not tripped(guard), "fewer than MIN_JUDGED records judged"
    guard.accepted(MIN_JUDGED - MIN_REFUSED - MIN_REFUSED)
    refuse_alone(guard, MIN_REFUSED - 1)
    assert not tripped(guard)
    error = trips(lambda: refuse_alone(guard, 1))
    refused = 2 * MIN_REFUSED
    assert str(error).startswith(f"Heap refused {refused} of the last {MIN_JUDGED}")
    assert "properties should be object" in str(error)
    assert "estimated" not in str(error)
    assert tripped(guard), "and every other thread stops at its next request"


def test_a_tie_is_at_least_half():
    guard = RejectionGuard()
    guard.accepted(MIN_JUDGED // 2)
    refuse_alone(guard, MIN_JUDGED // 2 - 1)
    assert not tripped(guard)
    trips(lambda: refuse_alone(guard, 1))


def test_an_acceptance_that_completes_the_evidence_trips_it():
    guard = RejectionGuard()
    refuse_alone(guard, MIN_JUDGED // 2)
    trips(lambda: guard.accepted(MIN_JUDGED // 2))


def test_a_few_bad_rows_among_good_ones_never_trip_it():
    guard = RejectionGuard()
    for _ in range(200):
        guard.accepted(19)
        refuse_alone(guard, 1)
    assert not tripped(guard)


def test_old_acceptances_leave_the_window_so_a_sync_gone_bad_stops_too():
    guard = RejectionGuard()
    guard.accepted(1_000_000)
    refuse_alone(guard, RECENT_RECORDS // 2 - 1)
    assert not tripped(guard)
    assert trips(lambda: refuse_alone(guard, 1)).judged == RECENT_RECORDS


# --- batches being split: probes, not the order of judgement -----------------------------------


def split(guard: RejectionGuard, records: int, probes: list[bool]) -> Judgement:
    judgement = guard.refused(records, REASON)
    for refused in probes:
        judgement.probed(refused, REASON if refused else None)
    return judgement


def test_refusals_found_by_splitting_do_not_count_one_by_one():
    """The case of issue 15: ten bad rows at the head of a 1000-row batch are judged first."""
    guard = RejectionGuard()
    judgement = split(guard, 1000, [False] * PROBES)
    for _ in range(10):
        judgement.refused_alone(REASON)
    assert not tripped(guard)
    assert judgement.finished() == 1000
    assert not tripped(guard)


def test_a_batch_being_split_counts_at_least_the_refusals_already_found_in_it():
    guard = RejectionGuard()
    judgement = split(guard, 2 * PROBES, [False] * PROBES)  # the estimate says none
    for _ in range(PROBES - 1):
        judgement.refused_alone(REASON)
    assert not tripped(guard)
    trips(lambda: judgement.refused_alone(REASON))  # half of its 40 records, whatever the probes


def test_refused_probes_trip_a_batch_heap_refuses_entirely():
    guard = RejectionGuard()
    judgement = split(guard, 1000, [True] * (MIN_REFUSED - 1))
    assert not tripped(guard)
    error = trips(lambda: judgement.probed(True, REASON))
    assert str(error).startswith(
        "Heap refused at least half of the last 1000 records it judged, as estimated from 10 "
        "records sent alone at spread positions, 10 of them refused (last refusal: HTTP 400: "
    )


def test_probes_are_pooled_over_every_batch_being_split():
    """Sixteen batches in flight, each with one refused probe: the evidence of all of them."""
    guard = RejectionGuard()
    judgements = [guard.refused(1000, REASON) for _ in range(MIN_REFUSED)]
    for judgement in judgements[:-1]:
        judgement.probed(True, REASON)
    assert not tripped(guard)
    trips(lambda: judgements[-1].probed(True, REASON))


def test_a_few_refused_probes_do_not_set_the_estimate_alone():
    """Imaginary accepted probes: five refused probes of five estimate half, not all."""
    guard = RejectionGuard()
    guard.accepted(RECENT_RECORDS // 2)
    refuse_alone(guard, MIN_REFUSED)
    split(guard, RECENT_RECORDS // 2 - MIN_REFUSED, [True] * ASSUMED_ACCEPTED_PROBES)
    assert not tripped(guard)


def test_a_finished_batch_counts_exactly_and_its_probes_leave_the_pool():
    guard = RejectionGuard()
    first = split(guard, 100, [True] * 3 + [False] * 17)
    for _ in range(2):
        first.refused_alone(REASON)
    assert first.finished() == 100
    second = split(guard, 100, [True] * 4)
    assert not tripped(guard)
    second.probed(True, REASON)  # 5 probes of 5 in the pool: 5 of 10 with the assumed ones
    assert not tripped(guard), "the first batch counts 5 of 100, not its probes' share"


def test_mostly_refused_is_the_batches_own_probes():
    guard = RejectionGuard()
    judgement = split(guard, 100, [True, False, True])
    assert judgement.mostly_refused
    judgement.probed(False)
    assert judgement.mostly_refused, "half is mostly"
    judgement.probed(False)
    assert not judgement.mostly_refused
    assert not guard.refused(100, REASON).mostly_refused, "no probe yet"


# --- settling ---------------------------------------------------------------------------------


def test_a_refusal_settles_once_the_window_has_moved_past_it_whatever_stream_moved_it():
    guard = RejectionGuard()
    judgement = split(guard, 10, [True])
    position = judgement.finished()
    assert position is not None
    guard.accepted(RECENT_RECORDS - 1)
    assert not guard.settled(position)
    guard.accepted(1)
    assert guard.settled(position)


def test_batches_still_being_split_do_not_settle_a_refusal():
    """They may be the failure it belongs to: a sync turning bad, many batches in flight."""
    guard = RejectionGuard()
    position = split(guard, 10, [True]).finished()
    assert position is not None
    later = guard.refused(RECENT_RECORDS, REASON)
    assert not guard.settled(position)
    later.finished()
    assert guard.settled(position)


def test_a_split_batch_without_refusals_needs_no_settling():
    """A 413 for the batch, every half accepted: nothing was refused."""
    guard = RejectionGuard()
    assert split(guard, 10, [False] * 10).finished() is None


# --- probe positions --------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 1000), seed=st.integers(0, 2**31))
def test_probes_are_one_per_stratum_or_every_item(size, seed):
    items = [{"n": n} for n in range(size)]
    probes = probe_positions(items, None, seed)
    assert len(set(probes)) == len(probes) == min(size, PROBES)
    if size > PROBES:  # strata of equal size (to one item), one probe in each
        bounds = [(s * size // PROBES, (s + 1) * size // PROBES) for s in range(PROBES)]
        assert all(hi - lo in (size // PROBES, size // PROBES + 1) for lo, hi in bounds)
        assert sorted(probes) == sorted(
            next(p for p in probes if lo <= p < hi) for lo, hi in bounds
        )
    assert probe_positions(items, None, seed) == probes, "reproducible"


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(st.integers(0, 30), min_size=1, max_size=300),
    seed=st.integers(0, 2**31),
)
def test_a_probe_never_overtakes_an_earlier_item_of_its_key(keys, seed):
    items = [{"identity": str(key)} for key in keys]
    probes = probe_positions(items, lambda item: item["identity"], seed)
    firsts = {keys.index(key) for key in keys}
    assert set(probes) <= firsts
    assert len(probes) == min(len(firsts), PROBES)


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(PROBES + 1, 1000),
    start=st.integers(0, 999),
    length=st.integers(1, 1000),
    seed=st.integers(0, 2**31),
)
def test_a_run_of_bad_rows_hits_only_the_probes_of_the_strata_it_spans(size, start, length, seed):
    start, end = start % size, min(size, start % size + length)
    probes = probe_positions([{}] * size, None, seed)
    hits = sum(start <= p < end for p in probes)
    stratum = size / PROBES
    assert hits <= (end - start) / stratum + 2


# --- the guard against a plain model of the rule -----------------------------------------------


class PlainRule:
    """The rule as README states it, recomputed from every batch on each question."""

    def __init__(self) -> None:
        self.batches: list[dict] = []

    def judged(self, records: int, splitting: bool) -> dict:
        end = sum(b["records"] for b in self.batches) + records
        batch = {"records": records, "end": end, "refused": 0, "splitting": splitting}
        batch.update(probes=0, refused_probes=0)
        self.batches.append(batch)
        return batch

    def trips(self) -> bool:
        start = sum(b["records"] for b in self.batches) - RECENT_RECORDS
        splitting = [b for b in self.batches if b["splitting"]]
        share = Fraction(
            sum(b["refused_probes"] for b in splitting),
            sum(b["probes"] for b in splitting) + ASSUMED_ACCEPTED_PROBES,
        )
        records = refused = on_own = Fraction(0)
        for b in self.batches:
            inside = Fraction(max(0, min(b["records"], b["end"] - start)), b["records"])
            estimate = max(b["refused"], b["records"] * share) if b["splitting"] else b["refused"]
            records += b["records"] * inside
            refused += estimate * inside
            on_own += b["refused"] if b["splitting"] else b["refused"] * inside
        return records >= MIN_JUDGED and on_own >= MIN_REFUSED and 2 * refused >= records


sizes = st.one_of(st.just(1), st.integers(2, 40), st.sampled_from([333, 999, 1000, 1001, 1500]))
kinds = st.sampled_from(
    ["accepted", "refused", "probe", "probe", "alone", "alone", "alone", "alone", "finish"]
)
events = st.lists(
    st.tuples(kinds, sizes, st.integers(0, 15), st.floats(0, 1)), min_size=30, max_size=120
)
"""Each event: a kind, a batch size, which open batch it is about, and a draw (refused when
below the sync's refused share)."""


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([0.0, 0.05, 0.3, 0.5, 0.7, 0.9, 1.0]), events)
def test_the_guard_trips_exactly_when_the_plain_rule_says(share, events):
    guard, model = RejectionGuard(), PlainRule()
    open_batches: list[tuple[Judgement, dict]] = []
    for kind, records, which, draw in events:
        try:
            if kind == "accepted":
                model.judged(records, splitting=False)
                guard.accepted(records)
            elif kind == "refused" and records == 1:
                model.judged(1, splitting=False)["refused"] = 1
                guard.refused(1, REASON)
            elif kind == "refused":
                batch = model.judged(records, splitting=True)
                open_batches.append((guard.refused(records, REASON), batch))
            elif open_batches:
                judgement, batch = open_batches[which % len(open_batches)]
                refused = draw < share
                if kind == "probe":
                    batch["probes"] += 1
                    batch["refused_probes"] += refused
                    batch["refused"] += refused
                    judgement.probed(refused, REASON if refused else None)
                elif kind == "alone" and refused and batch["refused"] < batch["records"]:
                    batch["refused"] += 1
                    judgement.refused_alone(REASON)
                elif kind == "finish":
                    batch["splitting"] = False
                    open_batches.remove((judgement, batch))
                    judgement.finished()
        except HeapRefusesMost:
            assert model.trips(), f"the guard tripped early, at {kind}"
            return
        assert not model.trips(), f"the guard did not trip at {kind}"


# --- whole syncs over a fake Heap ------------------------------------------------------------
# The writer with its routes, batchers, sending threads and deliveries, on RefusingHeap: what the
# rule promises for a sync (README, "Heap refuses most records").

ALL_REFUSED_REQUESTS = 50
"""README: when Heap refuses every record, at most this many requests for the whole sync."""


@dataclass
class Synced:
    heap: RefusingHeap
    writer: HeapWriter
    states: list[EmittedState]
    error: HeapRefusesMost | None

    @property
    def rejected(self) -> int:
        return sum(route.delivery.rejected.total() for route in self.writer.stats.routes)


Rows = list[tuple[str, bool]]
"""A sync's records in input order: (stream, refused by Heap?). Row n's identity is `r<n>`."""


def run_sync(
    rows: Rows, batch_size: int, concurrency: int, state_every: int = 0, **config: object
) -> Synced:
    """Each stream's state after every `state_every` of its records and at its end."""
    streams = sorted({stream for stream, _ in rows})
    heap = RefusingHeap({f"r{n}" for n, (_, bad) in enumerate(rows) if bad})
    settings = heap_config(batch_size=batch_size, max_concurrent_requests=concurrency, **config)
    writer = HeapWriter.start(
        settings, make_catalog(*streams), InputStats(), FakeClock(), client_factory=heap
    )
    seen = dict.fromkeys(streams, 0)
    last = {stream: n for n, (stream, _) in enumerate(rows)}
    error = None
    try:
        for n, (stream, _) in enumerate(rows):
            writer.process(record(f"r{n}", stream))
            seen[stream] += 1
            if n == last[stream] or (state_every and seen[stream] % state_every == 0):
                writer.process(stream_state(stream, n))
        writer.finish()
    except HeapRefusesMost as refused:
        error = refused
        writer.stop()
    finally:
        writer.close()
    states = [line for line in writer.take_output() if line.__class__ is EmittedState]
    return Synced(heap, writer, states, error)


def good_rows(rows: Rows) -> list[str]:
    return sorted(f"r{n}" for n, (_, bad) in enumerate(rows) if not bad)


def delivered(synced: Synced) -> list[str]:
    return sorted(item["identity"] for item in synced.heap.accepted)


def emitted_rows(state: EmittedState) -> int:
    """The last row (0-based) a state of `run_sync` follows."""
    return state_value(state)


ARRANGEMENTS = ("head", "tail", "interleaved", "spread", "random")


def arranged(draw: st.DrawFn, size: int, count: int) -> set[int]:
    """`count` positions of a block of `size`, as bad rows are found in real data."""
    how = draw(st.sampled_from(ARRANGEMENTS))
    if how == "head":
        return set(range(count))
    if how == "tail":
        return set(range(size - count, size))
    if how == "interleaved":
        return set(range(0, 2 * count, 2))
    if how == "spread":
        return {i * size // max(count, 1) for i in range(count)}
    return set(draw(st.permutations(range(size)))[:count])


batch_sizes = st.one_of(st.sampled_from([1, 2, 19, 20, 21, 100, 1000]), st.integers(1, 1000))


@st.composite
def healthy_syncs(draw: st.DrawFn) -> tuple[Rows, int, int]:
    """At most 5% of each batch refused (of each 20 rows, for smaller batches), in any
    arrangement, in one to three streams, whose records come one stream after another or mixed."""
    batch_size, concurrency = draw(batch_sizes), draw(st.integers(1, 16))
    block = max(batch_size, 20)
    streams = draw(st.lists(st.sampled_from("abc"), min_size=1, max_size=3, unique=True))
    per_stream: dict[str, list[bool]] = {}
    for stream in streams:
        blocks = draw(st.integers(1, max(1, 2400 // block // len(streams))))
        bad: list[bool] = []
        for _ in range(blocks):
            refused = arranged(draw, block, draw(st.integers(0, block * 5 // 100)))
            bad += [i in refused for i in range(block)]
        per_stream[stream] = bad
    if draw(st.booleans()):
        rows = [(stream, bad) for stream in streams for bad in per_stream[stream]]
    else:  # mixed: each record from a stream drawn in turn
        rows, cursors = [], dict.fromkeys(streams, 0)
        order = draw(st.randoms(use_true_random=False))
        while cursors:
            stream = order.choice(sorted(cursors))
            rows.append((stream, per_stream[stream][cursors[stream]]))
            cursors[stream] += 1
            if cursors[stream] == len(per_stream[stream]):
                del cursors[stream]
    return rows, batch_size, concurrency


@settings(max_examples=60, deadline=None)
@given(healthy_syncs())
def test_a_sync_with_at_most_5_percent_refused_anywhere_completes(sync):
    rows, batch_size, concurrency = sync
    synced = run_sync(rows, batch_size, concurrency)

    assert synced.error is None
    assert delivered(synced) == good_rows(rows), "every good row, once"
    assert synced.rejected == sum(bad for _, bad in rows), "every refused row, counted"
    assert len(synced.states) == len({stream for stream, _ in rows})


@settings(max_examples=30, deadline=None)
@given(
    batch_size=st.integers(1, PROBES),
    concurrency=st.integers(1, 16),
    run=st.integers(0, MIN_JUDGED // 2 - 1),
)
def test_a_short_run_of_refused_rows_at_the_very_start_is_skipped(batch_size, concurrency, run):
    """Small batches are judged exactly, record by record: fewer than half of the first
    MIN_JUDGED records never stop a sync."""
    rows = [("a", n < run) for n in range(200)]
    synced = run_sync(rows, batch_size, concurrency)
    assert synced.error is None and synced.rejected == run


@settings(max_examples=40, deadline=None)
@given(
    batch_size=batch_sizes,
    concurrency=st.integers(1, 16),
    streams=st.integers(1, 3),
)
def test_a_sync_heap_refuses_entirely_stops_within_50_requests(batch_size, concurrency, streams):
    records = max(2000, (concurrency + 2) * batch_size * streams)
    rows = [("abc"[n % streams], True) for n in range(records)]
    synced = run_sync(rows, batch_size, concurrency, state_every=7)

    assert synced.error is not None
    assert synced.heap.requests <= ALL_REFUSED_REQUESTS
    assert synced.heap.accepted == [] and synced.states == []


@settings(max_examples=30, deadline=None)
@given(
    batch_size=batch_sizes,
    concurrency=st.integers(1, 16),
    good=st.integers(RECENT_RECORDS, 3 * RECENT_RECORDS),
    batches_per_state=st.sampled_from([1, 3]),
)
def test_a_sync_that_turns_bad_stops_within_half_a_window_of_refusals(
    batch_size, concurrency, good, batches_per_state
):
    """Half of the window must be refused (estimated): about RECENT_RECORDS / 2 refused records,
    at one request each when their batch is mostly refused, plus the first request of each
    batch and the batch the turn falls in. (States come after whole batches here: a state
    sends the batch filling before it, and smaller batches cost more requests per record.)"""
    rows = [("a", n >= good) for n in range(good + 2 * RECENT_RECORDS)]
    synced = run_sync(rows, batch_size, concurrency, state_every=batch_size * batches_per_state)

    assert synced.error is not None
    after_the_turn = synced.heap.requests - -(-good // batch_size)
    per_record = (batch_size + 1) / batch_size
    assert after_the_turn <= (RECENT_RECORDS // 2 + batch_size) * per_record + PROBES
    assert set(delivered(synced)) <= set(good_rows(rows))
    for state in synced.states:
        assert emitted_rows(state) < good, "no state past the refused records"
        assert {f"r{n}" for n in range(emitted_rows(state) + 1)} <= set(delivered(synced))


# --- settling, sync-wide -----------------------------------------------------------------------


def test_a_refused_row_in_one_stream_never_holds_the_acknowledgement_of_another():
    """What a STREAM state of b waits for (its batcher's watermark) moves past b's batch while a's
    refusal is still in question. (The state gate decides whether states of different streams
    may leave out of input order.)"""
    clock = FakeClock()
    pool = SenderPool(4, clock)
    config = heap_config(batch_size=10)
    routes = Routes(
        config, make_catalog("a", "b"), clock, pool, ToHeap(config, clock, RefusingHeap({"bad"}))
    )
    a, b = routes.route_for((None, "a")), routes.route_for((None, "b"))
    a.process_record({"user": "bad", "event": "e"}, 1, stream_key(None, "a"))
    b.process_record({"user": "fine", "event": "e"}, 2, stream_key(None, "b"))
    assert (a.batcher.drain(), b.batcher.drain()) == (1, 1)
    pool.finish()

    assert b.batcher.acknowledged() == 1
    assert a.batcher.acknowledged() == 0, "held until the refusal settles or the input ends"
    a.batcher.settle_all()
    assert a.batcher.acknowledged() == 1


def writer_with_a_refused_row(heap: RefusingHeap, batch_size: int) -> HeapWriter:
    """Streams a and b; a's first record refused by Heap, then a state of a."""
    writer = HeapWriter.start(
        heap_config(batch_size=batch_size), make_catalog("a", "b"), InputStats(), FakeClock(), heap
    )
    writer.process(record("bad", "a"))
    writer.process(stream_state("a", 1))
    return writer


def released_streams(writer: HeapWriter) -> list[str]:
    """The streams of the states the writer has released since last asked."""
    return [
        emitted(line)["stream"]["stream_descriptor"]["name"]
        for line in writer.take_output()
        if line.__class__ is EmittedState
    ]


def test_a_refused_row_in_one_stream_never_holds_the_states_of_another():
    writer = writer_with_a_refused_row(RefusingHeap({"bad"}), batch_size=10)
    writer.process(record("fine", "b"))
    writer.process(stream_state("b", 2))
    released: list[str] = []
    for n in range(100_000):  # until the pool has sent b's batch: records drive it, no timing
        released += released_streams(writer)
        if released:
            break
        writer.process(record(f"x{n}", "elsewhere"))
    assert released == ["b"]
    writer.finish()
    writer.close()


def test_a_refused_row_settles_while_other_streams_load_though_its_stream_sends_nothing_more():
    heap = RefusingHeap({"bad"})
    writer = writer_with_a_refused_row(heap, batch_size=100)
    released = []
    for n in range(3 * RECENT_RECORDS):
        writer.process(record(f"b{n}", "b"))
        released += released_streams(writer)
    assert released == ["a"]
    assert len(heap.accepted) >= RECENT_RECORDS, "released only once the window moved past it"
    writer.finish()
    writer.close()
