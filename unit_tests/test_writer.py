"""HeapWriter: catalog matching, per-state record counts, batch size, ordering keys, and (over
the local sandbox) states held until acknowledged, LOG lines and the progress line."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from airbyte_cdk.models import (
    AirbyteMessage,
    AirbyteMessageSerializer,
    AirbyteStateMessage,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteCatalogSerializer,
    Level,
    Type,
)

from destination_heap_analytics import writer as writer_module
from destination_heap_analytics.config import HeapConfig, parse_config
from destination_heap_analytics.stats import InputStats
from destination_heap_analytics.writer import (
    CatalogStreams,
    HeapWriter,
    StateCounter,
    effective_batch_size,
    ordering_key,
)

TRACK_API = {
    "api_type": "track",
    "identity_column": "user",
    "event_column": "event",
    "property_columns": "*",
}
USER_API = {"api_type": "add_user_properties", "identity_column": "user", "property_columns": "*"}
ACCOUNT_API = {
    "api_type": "add_account_properties",
    "account_id_column": "account",
    "property_columns": "*",
}


def make_config(
    api: dict | None = None, base_url: str = "https://heap.test", **extra
) -> HeapConfig:
    raw = {"app_id": "11", "base_url": base_url, "api": api or TRACK_API}
    return parse_config({**raw, **extra})


def make_catalog(*streams: tuple[str | None, str]) -> ConfiguredAirbyteCatalog:
    def stream(namespace: str | None, name: str) -> dict:
        described = {
            "name": name,
            "json_schema": {"type": "object"},
            "supported_sync_modes": ["full_refresh"],
        }
        if namespace is not None:
            described["namespace"] = namespace
        return {"stream": described, "sync_mode": "full_refresh", "destination_sync_mode": "append"}

    return ConfiguredAirbyteCatalogSerializer.load({"streams": [stream(*s) for s in streams]})


def record(data: dict, stream: str = "users", namespace: str | None = None) -> AirbyteMessage:
    body = {"stream": stream, "data": data, "emitted_at": 1}
    if namespace is not None:
        body["namespace"] = namespace
    return AirbyteMessageSerializer.load({"type": "RECORD", "record": body})


def stream_state(name: str, value: int = 0, namespace: str | None = None) -> AirbyteMessage:
    descriptor = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    return AirbyteMessageSerializer.load(
        {
            "type": "STATE",
            "state": {
                "type": "STREAM",
                "stream": {"stream_descriptor": descriptor, "stream_state": {"v": value}},
            },
        }
    )


def global_state(value: int = 0) -> AirbyteMessage:
    return AirbyteMessageSerializer.load(
        {
            "type": "STATE",
            "state": {
                "type": "GLOBAL",
                "global": {"shared_state": {"v": value}, "stream_states": []},
            },
        }
    )


def legacy_state(value: int = 0) -> AirbyteMessage:
    return AirbyteMessageSerializer.load({"type": "STATE", "state": {"data": {"v": value}}})


# --- CatalogStreams ---------------------------------------------------------------------------


def test_catalog_contains_its_exact_namespace_and_name():
    streams = CatalogStreams(make_catalog(("shop", "orders"), (None, "users")))

    assert ("shop", "orders") in streams
    assert (None, "users") in streams


def test_catalog_falls_back_to_the_name_alone():
    streams = CatalogStreams(make_catalog(("shop", "orders"), (None, "users")))

    assert ("rewritten", "orders") in streams
    assert (None, "orders") in streams
    assert ("some_namespace", "users") in streams


def test_catalog_does_not_contain_other_names():
    streams = CatalogStreams(make_catalog(("shop", "orders")))

    assert ("shop", "refunds") not in streams
    assert (None, "Orders") not in streams


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


# --- effective_batch_size and ordering_key ----------------------------------------------------


def test_batch_size_is_the_configured_one_without_pacing():
    assert effective_batch_size(make_config(batch_size=250, max_events_per_minute=0)) == 250


def test_batch_size_is_capped_by_max_events_per_minute():
    assert effective_batch_size(make_config(batch_size=500, max_events_per_minute=120)) == 120


def test_batch_size_is_not_raised_by_a_larger_rate_limit():
    assert effective_batch_size(make_config(batch_size=500, max_events_per_minute=9000)) == 500


def test_default_track_batch_size_fits_heaps_documented_limit():
    assert effective_batch_size(make_config()) == 1000


def test_ordering_key_for_user_properties_is_the_identity():
    key = ordering_key(make_config(USER_API))

    assert key is not None
    assert key({"identity": "u-7", "properties": {"plan": "pro"}}) == "u-7"


def test_ordering_key_for_account_properties_is_the_account_id():
    key = ordering_key(make_config(ACCOUNT_API))

    assert key is not None
    assert key({"account_id": "acme", "properties": {}}) == "acme"


def test_track_has_no_ordering_key():
    assert ordering_key(make_config(TRACK_API)) is None


# --- HeapWriter over the sandbox --------------------------------------------------------------


@pytest.fixture
def make_writer(sandbox):
    writers: list[HeapWriter] = []

    def make(api: dict | None = None, **extra) -> HeapWriter:
        config = make_config(api, base_url=sandbox.url, max_events_per_minute=0, **extra)
        writer = HeapWriter(config, make_catalog((None, "users")), InputStats())
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        writer.abort()
        writer.close()


def logs(messages: list[AirbyteMessage], level: Level | None = None) -> list[str]:
    return [
        m.log.message
        for m in messages
        if m.type == Type.LOG and (level is None or m.log.level == level)
    ]


def states(messages: list[AirbyteMessage]) -> list[AirbyteStateMessage]:
    return [m.state for m in messages if m.type == Type.STATE]


def test_state_is_held_until_its_records_are_acknowledged(sandbox, make_writer):
    sandbox.set_faults(latency_ms=200)
    writer = make_writer()
    writer.process(record({"user": "u1", "event": "a"}))
    writer.process(record({"user": "u2", "event": "b"}))
    writer.process(stream_state("users", 1))

    assert states(writer.take_output()) == []
    assert sandbox.accepted("track") == []

    writer.finish()

    (released,) = states(writer.take_output())
    assert released.stream.stream_state.v == 1
    assert released.destinationStats.recordCount == 2
    assert len(sandbox.accepted("track")) == 2


def test_state_without_pending_records_is_released_at_once(make_writer):
    writer = make_writer()

    writer.process(stream_state("users", 5))

    (released,) = states(writer.take_output())
    assert released.stream.stream_state.v == 5
    assert released.destinationStats.recordCount == 0


def test_state_after_a_released_state_without_new_records_is_released_at_once(make_writer):
    writer = make_writer()
    writer.process(record({"user": "u1", "event": "a"}))
    writer.process(stream_state("users", 1))
    output: list[AirbyteMessage] = []
    deadline = time.monotonic() + 2
    while not states(output) and time.monotonic() < deadline:
        time.sleep(0.005)
        writer.process(record({"user": "u9", "event": "z"}, stream="not_in_catalog"))
        output += writer.take_output()
    assert [s.stream.stream_state.v for s in states(output)] == [1]

    writer.process(stream_state("users", 2))

    assert [s.stream.stream_state.v for s in states(writer.take_output())] == [2]


def test_state_is_not_released_while_a_later_batch_is_in_flight(sandbox, make_writer):
    sandbox.set_faults(latency_ms=300)
    writer = make_writer(max_concurrent_requests=1)
    writer.process(record({"user": "u1", "event": "a"}))
    writer.process(stream_state("users", 1))
    writer.process(record({"user": "u2", "event": "b"}))
    # With one sender, draining for this state waits for the first batch to finish.
    writer.process(stream_state("users", 2))
    released = states(writer.take_output())
    deadline = time.monotonic() + 0.1
    while not released and time.monotonic() < deadline:
        time.sleep(0.005)
        writer.process(record({"user": "u9", "event": "z"}, stream="not_in_catalog"))
        released += states(writer.take_output())

    assert [s.stream.stream_state.v for s in released] == [1]
    assert [item["identity"] for item in sandbox.accepted("track")] == ["u1"]
    writer.finish()
    assert [s.stream.stream_state.v for s in states(writer.take_output())] == [2]
    assert len(sandbox.accepted("track")) == 2


def test_states_come_out_in_input_order_with_their_own_counts(sandbox, make_writer):
    writer = make_writer()
    for message in [
        record({"user": "u1", "event": "a"}),
        stream_state("users", 1),
        record({"user": "u2", "event": "b"}),
        record({"user": "u3", "event": "c"}),
        stream_state("users", 2),
    ]:
        writer.process(message)

    writer.finish()

    released = states(writer.take_output())
    assert [s.stream.stream_state.v for s in released] == [1, 2]
    assert [s.destinationStats.recordCount for s in released] == [1, 2]
    assert writer.stats.states_emitted == 2
    assert writer.stats.delivery.delivered == 3


def test_invalid_record_is_logged_by_row_and_reason_and_not_sent(sandbox, make_writer):
    writer = make_writer()
    writer.process(record({"user": "u1", "event": "a"}))
    writer.process(record({"event": "no user here"}))

    writer.finish()

    assert logs(writer.take_output(), Level.WARN) == [
        "Row 2 skipped as invalid: user is missing or null."
    ]
    assert [item["identity"] for item in sandbox.accepted("track")] == ["u1"]
    assert writer.stats.invalid == {"user is missing or null": 1}


def test_stream_not_in_catalog_is_warned_about_once_and_counted(sandbox, make_writer):
    writer = make_writer()
    for _ in range(3):
        writer.process(record({"user": "u1", "event": "a"}, stream="orders"))

    writer.finish()

    warnings = logs(writer.take_output(), Level.WARN)
    assert len(warnings) == 1
    assert "'orders' is not in the configured catalog" in warnings[0]
    assert writer.stats.ignored_streams == {"orders": 3}
    assert sandbox.requests_log() == []


def test_rejected_row_is_logged_with_its_row_number(sandbox, make_writer):
    sandbox.set_faults(reject_marker="REFUSE-ME")
    writer = make_writer()
    writer.process(record({"user": "u1", "event": "a"}))
    writer.process(record({"user": "u2", "event": "REFUSE-ME"}))
    writer.process(record({"user": "u3", "event": "c"}))

    writer.finish()

    (warning,) = logs(writer.take_output(), Level.WARN)
    assert warning.startswith("Row 2 rejected by Heap (HTTP 400: ")
    assert "REFUSE-ME" not in warning
    assert sorted(item["identity"] for item in sandbox.accepted("track")) == ["u1", "u3"]


def test_summary_has_the_totals_line_then_the_summary_line(make_writer):
    writer = make_writer()
    writer.process(stream_state("users", 1))
    writer.process(record({"user": "u1", "event": "a"}))
    writer.process(record({"event": "invalid"}))
    writer.finish()

    totals, summary = logs(writer.summary())

    assert totals == "Total Messages: 3. Total Records: 2. Total loaded: 1."
    assert summary.startswith("Sync summary: invalid records skipped: 1 (")


# --- the progress line ------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """Replaces the clock the writer reads (and only that one)."""
    fake = FakeClock()
    monkeypatch.setattr(writer_module, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def progress_lines(writer: HeapWriter) -> list[str]:
    return [line for line in logs(writer.take_output()) if line.startswith("Progress: ")]


def test_progress_line_appears_at_most_every_interval(clock, monkeypatch, make_writer):
    monkeypatch.setattr(writer_module, "PROGRESS_INTERVAL_SECONDS", 5.0)
    writer = make_writer()
    start = clock.now
    seen = []

    for offset in (1.0, 4.9, 5.0, 6.0, 9.9, 10.0, 10.1, 30.0):
        clock.now = start + offset
        writer.process(stream_state("users"))
        seen.append(len(progress_lines(writer)))

    assert seen == [0, 0, 1, 0, 0, 1, 0, 1]


def test_progress_line_is_checked_while_records_stream(clock, monkeypatch, make_writer):
    monkeypatch.setattr(writer_module, "PROGRESS_INTERVAL_SECONDS", 5.0)
    monkeypatch.setattr(writer_module, "PROGRESS_CHECK_EVERY", 2)
    writer = make_writer()
    writer.process(record({"user": "u1", "event": "a"}))
    writer.process(record({"user": "u2", "event": "b"}))
    assert progress_lines(writer) == []

    clock.now += 5.0
    writer.process(record({"user": "u3", "event": "c"}))
    writer.process(record({"user": "u4", "event": "d"}))

    (line,) = progress_lines(writer)
    assert line.startswith("Progress: 4 records read, ")


def test_no_progress_line_before_the_default_interval(clock, make_writer):
    writer = make_writer()

    clock.now += writer_module.PROGRESS_INTERVAL_SECONDS - 0.1
    writer.process(stream_state("users"))
    assert progress_lines(writer) == []

    clock.now += 0.1
    writer.process(stream_state("users"))
    assert len(progress_lines(writer)) == 1
