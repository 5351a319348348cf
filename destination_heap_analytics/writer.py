"""One sync's work on the message stream: records to Heap items to batches, states held until
their records are acknowledged.

`destination.write` feeds every message in; the writer queues what must go back out (LOG and
STATE messages, in order) and the destination yields it. All output is produced on the main
thread; the sending threads only count.
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections import Counter, deque
from collections.abc import Callable

from airbyte_cdk.models import (
    AirbyteLogMessage,
    AirbyteMessage,
    AirbyteRecordMessage,
    AirbyteStateMessage,
    AirbyteStateStats,
    AirbyteStateType,
    ConfiguredAirbyteCatalog,
    Level,
    Type,
)

from destination_heap_analytics.client import HeapClient
from destination_heap_analytics.column_report import ColumnReport
from destination_heap_analytics.config import ApiType, HeapConfig
from destination_heap_analytics.delivery import BatchDelivery, DeliveryStats
from destination_heap_analytics.loader import BatchLoader
from destination_heap_analytics.pacer import Pacer
from destination_heap_analytics.rejection_guard import RejectionGuard
from destination_heap_analytics.retry import RetryPolicy
from destination_heap_analytics.stats import InputStats, SyncStats
from destination_heap_analytics.transformer import InvalidRecord, RecordTransformer, stream_key

logger = logging.getLogger("airbyte")

PROGRESS_INTERVAL_SECONDS = 10.0
PROGRESS_CHECK_EVERY = 1024
"""Records between clock reads for the progress line."""
LOGGED_ROWS_PER_REASON = 10
"""Rows logged individually per skip reason; the rest are counted in the summary."""

StreamId = tuple[str | None, str]


class CatalogStreams:
    """Which streams the configured catalog names; records of others are ignored (counted)."""

    def __init__(self, catalog: ConfiguredAirbyteCatalog) -> None:
        self._exact = {(s.stream.namespace, s.stream.name) for s in catalog.streams}
        self._names = {name for _, name in self._exact}

    def __contains__(self, stream: StreamId) -> bool:
        """Exact (namespace, name); else by name, as some platforms rewrite namespaces."""
        return stream in self._exact or stream[1] in self._names


class StateCounter:
    """Records seen per state chunk, for `destinationStats.recordCount`.

    `count` runs once per record, so it is a single dict update; the chunk of a GLOBAL state is
    derived from the running total instead of being counted separately.
    """

    def __init__(self) -> None:
        self._per_stream: dict[StreamId, int] = {}
        self._total_at_last_global = 0

    def count(self, stream: StreamId) -> None:
        per_stream = self._per_stream
        per_stream[stream] = per_stream.get(stream, 0) + 1

    def take(self, state: AirbyteStateMessage, records_so_far: int) -> int:
        if state.type == AirbyteStateType.STREAM and state.stream is not None:
            descriptor = state.stream.stream_descriptor
            return self._per_stream.pop((descriptor.namespace, descriptor.name), 0)
        taken = records_so_far - self._total_at_last_global
        self._total_at_last_global = records_so_far
        self._per_stream.clear()
        return taken


class HeapWriter:
    def __init__(
        self, config: HeapConfig, catalog: ConfiguredAirbyteCatalog, input_stats: InputStats
    ) -> None:
        self.config = config
        self._cancelled = threading.Event()
        self._transformer = RecordTransformer(config.mapping)
        self._transform = self._transformer.transform
        self._client = HeapClient(
            config.endpoint_url,
            config.app_id,
            config.api_type.bulk_key if config.uses_bulk_form else None,
            pool_size=config.max_concurrent_requests,
        )
        self._pacer = Pacer(config.pacing, sleep=self._sleep)
        delivery_stats = DeliveryStats()
        delivery = BatchDelivery(
            self._client,
            self._pacer,
            RetryPolicy(config.max_retry_seconds),
            delivery_stats,
            sleep=self._sleep,
            guard=RejectionGuard(),
        )
        self._loader = BatchLoader(
            delivery.deliver,
            effective_batch_size(config),
            config.max_concurrent_requests,
            self._cancelled,
            ordering_key=ordering_key(config),
            while_waiting=self._report_while_blocked,
            settled=delivery.settled,
        )
        self.stats = SyncStats(input_stats, delivery_stats, self._transformer.stats)
        self._streams = CatalogStreams(catalog)
        self._stream_keys: dict[StreamId, bytes] = {}
        self._state_counter = StateCounter()
        self._pending_states: deque[tuple[int, AirbyteMessage]] = deque()
        self._column_report = ColumnReport(config.mapping.configured_columns())
        self._sampling_columns = True
        self._logged_reasons: Counter = Counter()
        self._next_progress = time.monotonic() + PROGRESS_INTERVAL_SECONDS
        self.output: list[AirbyteMessage] = []
        if config.pacing.time_scale != 1.0:
            self.log(
                Level.WARN,
                f"Rate-limit windows are scaled by {config.pacing.time_scale} "
                "(DESTINATION_HEAP_ANALYTICS_PACING_TIME_SCALE, for benchmarks and tests only).",
            )

    # -- input ------------------------------------------------------------------------------
    def process(self, message: AirbyteMessage) -> None:
        self.stats.messages += 1
        if message.type == Type.RECORD:
            self.process_record(message.record)
        elif message.type == Type.STATE:
            self.process_state(message)
        if self._pending_states and self._loader.has_finished_batches:
            self._release_acknowledged_states()

    def process_record(self, record: AirbyteRecordMessage) -> None:
        """Runs once per record: kept to plain attribute and dict operations."""
        stats = self.stats
        stats.records += 1
        row = stats.records
        stream = (record.namespace, record.stream)
        self._state_counter.count(stream)
        key = self._stream_keys.get(stream)
        if key is None:
            key = self._admit_stream(stream)
            if key is None:
                return
        data = record.data
        if self._sampling_columns:
            self._observe_columns(data)
        try:
            item = self._transform(data, key)
        except InvalidRecord as invalid:
            self._skip(row, invalid.reason)
            return
        self._loader.process_record(item, row)
        if row % PROGRESS_CHECK_EVERY == 0:
            self._progress()

    def process_state(self, message: AirbyteMessage) -> None:
        """Drain on state: the pending batch leaves now; the state waits for its acknowledgement."""
        state = message.state
        count = self._state_counter.take(state, self.stats.records)
        state.destinationStats = AirbyteStateStats(recordCount=float(count))
        self._pending_states.append((self._loader.drain(), message))
        self._release_acknowledged_states()
        self._report_rejections()
        self._progress()

    def finish(self) -> None:
        """End of input: everything is sent and acknowledged, then the remaining states go out."""
        self._flush_column_report()
        self._loader.finish()
        self._release_acknowledged_states()
        self._report_rejections()

    def abort(self) -> None:
        self._loader.abort()
        self._report_rejections()

    def close(self) -> None:
        self._client.close()

    # -- output -----------------------------------------------------------------------------
    def take_output(self) -> list[AirbyteMessage]:
        taken, self.output = self.output, []
        return taken

    def summary(self) -> list[AirbyteMessage]:
        return [
            log_message(Level.INFO, self.stats.totals_line()),
            log_message(Level.INFO, self.stats.summary_line(self._pacer.waited_seconds)),
        ]

    def log(self, level: Level, text: str) -> None:
        self.output.append(log_message(level, text))

    # -- internals ----------------------------------------------------------------------------
    def _sleep(self, seconds: float) -> bool:
        """Interruptible sleep for retries and pacing: False once the sync is cancelled."""
        return not self._cancelled.wait(seconds)

    def _admit_stream(self, stream: StreamId) -> bytes | None:
        if stream not in self._streams:
            if not self.stats.ignored_streams[stream[1]]:
                self.log(
                    Level.WARN,
                    f"Stream '{stream[1]}' is not in the configured catalog; its records are "
                    "ignored and counted in the summary.",
                )
            self.stats.ignored_streams[stream[1]] += 1
            return None
        key = self._stream_keys[stream] = stream_key(*stream)
        return key

    def _observe_columns(self, data: dict) -> None:
        self._column_report.observe(data)
        if not self._column_report.sampling:
            self._sampling_columns = False
            self._flush_column_report()

    def _flush_column_report(self) -> None:
        for warning in self._column_report.warnings():
            self.log(Level.WARN, warning)

    def _skip(self, row: int, reason: str) -> None:
        self.stats.invalid[reason] += 1
        self._log_row(row, f"Row {row} skipped as invalid: {reason}.", reason)

    def _log_row(self, row: int, text: str, reason: str) -> None:
        self._logged_reasons[reason] += 1
        seen = self._logged_reasons[reason]
        if seen <= LOGGED_ROWS_PER_REASON:
            if seen == LOGGED_ROWS_PER_REASON:
                text += " Further rows with this reason are counted in the summary only."
            self.log(Level.WARN, text)

    def _report_rejections(self) -> None:
        for rejection in self.stats.delivery.take_new_rejections():
            reason = f"HTTP {rejection.status}: {rejection.message}"
            self._log_row(
                rejection.row, f"Row {rejection.row} rejected by Heap ({reason}).", reason
            )

    def _release_acknowledged_states(self) -> None:
        acknowledged = self._loader.acknowledged()
        pending = self._pending_states
        while pending and pending[0][0] <= acknowledged:
            self._report_rejections()
            self.output.append(pending.popleft()[1])
            self.stats.states_emitted += 1

    def _report_while_blocked(self) -> None:
        """Senders are all busy (slow or retrying Heap): the generator cannot yield now, so the
        progress line goes straight to the Airbyte logger, from this same main thread."""
        self._next_progress = time.monotonic() + PROGRESS_INTERVAL_SECONDS
        logger.info(self.stats.progress_line(self._loader.in_flight))

    def _progress(self) -> None:
        now = time.monotonic()
        if now >= self._next_progress:
            self._next_progress = now + PROGRESS_INTERVAL_SECONDS
            self._report_rejections()
            self.log(Level.INFO, self.stats.progress_line(self._loader.in_flight))


def effective_batch_size(config: HeapConfig) -> int:
    """A batch must fit the per-app rate limit, or it could never be sent."""
    limit = config.pacing.per_app
    return min(config.batch_size, limit.items) if limit is not None else config.batch_size


def ordering_key(config: HeapConfig) -> Callable[[dict], str] | None:
    """Which item field must keep its input order across batches (last write wins in Heap)."""
    if config.api_type is ApiType.ADD_USER_PROPERTIES:
        return operator.itemgetter("identity")
    if config.api_type is ApiType.ADD_ACCOUNT_PROPERTIES:
        return operator.itemgetter("account_id")
    return None


def log_message(level: Level, text: str) -> AirbyteMessage:
    return AirbyteMessage(type=Type.LOG, log=AirbyteLogMessage(level=level, message=text))
