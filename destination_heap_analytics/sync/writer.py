"""One sync's dispatch: each RECORD to its stream's route, each STATE to the gate.

`run` is the one loop of a sync, used by `write` and by `preview` alike: it feeds every message
in and yields what must go back out (LOG messages and states, in order), and it ends the same
way whatever stops it. All output is produced on the main thread; the sending threads only
count. The writer builds nothing itself beyond wiring the parts together in `start`, and formats
no text (that is `sync_log`'s).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from airbyte_cdk.models import AirbyteMessage, ConfiguredAirbyteCatalog, Type

from destination_heap_analytics.config.settings import HeapConfig, StreamId, no_mapping_error
from destination_heap_analytics.counters import ChunkTally, InputStats, SyncStats
from destination_heap_analytics.delivery.rejected_records import (
    ObjectStorageError,
    RejectedRecords,
    invalid_reason,
)
from destination_heap_analytics.delivery.rejection_guard import HeapRefusesMost
from destination_heap_analytics.delivery.retry import RetryPolicy
from destination_heap_analytics.delivery.senders import SenderPool
from destination_heap_analytics.heap.client import HeapClient, UserDeletionClient
from destination_heap_analytics.mapping.transformer import stream_key
from destination_heap_analytics.protocol.idle import IDLE, Idle
from destination_heap_analytics.protocol.state_message import EmittedState, StateKind, StateMessage
from destination_heap_analytics.sync.dry_run import DryRun, PreviewSample
from destination_heap_analytics.sync.routes import Ignored, Route, Routes, ToHeap
from destination_heap_analytics.sync.state_gate import EVERY_STREAM, HeldState, StateGate
from destination_heap_analytics.sync.sync_log import SyncLog
from destination_heap_analytics.sync_clock import Clock, SyncClock

RECORD = Type.RECORD
STATE = Type.STATE
PROGRESS_CHECK_EVERY = 1024
"""Records between clock reads for the progress line."""

Message = AirbyteMessage | StateMessage | Idle
Output = AirbyteMessage | EmittedState


def catalog_sync_id(catalog: ConfiguredAirbyteCatalog) -> int | None:
    """The job id the platform puts on every stream of the catalog (for destinations that
    declare `supportsRefreshes`); None when run by hand or through PyAirbyte."""
    return next((s.sync_id for s in catalog.streams if s.sync_id is not None), None)


class _Stream:
    """What the writer knows of one (namespace, name) seen in the input: its catalog stream
    (`key`, or the name itself when the catalog has none), its route or why it has none, the
    tally of its current state chunk, and the stream part of its records' idempotency keys
    (always the input's own namespace and name)."""

    __slots__ = ("key", "route", "ignored", "tally", "stream_key")

    def __init__(
        self, stream: StreamId, key: StreamId, route: Route | Ignored, tally: ChunkTally
    ) -> None:
        self.stream_key = stream_key(*stream)
        self.key = key
        self.route = route if route.__class__ is Route else None
        self.ignored = route if route.__class__ is Ignored else None
        self.tally = tally


class HeapWriter:
    def __init__(
        self,
        routes: Routes,
        pool: SenderPool,
        stats: SyncStats,
        log: SyncLog,
        output: list[Output],
        gate: StateGate,
        rejected: RejectedRecords | None = None,
    ) -> None:
        """`output` is where the log writes its lines; states join them there, in order.
        `rejected` is the user's bucket for the records that do not reach Heap, if any."""
        self._rejected = rejected
        self.output = output
        self._routes = routes
        self._streams = routes.streams
        self._pool = pool
        self.stats = stats
        self._log = log
        self._gate = gate
        self._known: dict[StreamId, _Stream] = {}
        self._tallies: dict[StreamId, ChunkTally] = {}
        """The current chunk of each catalog stream (or unmatched name) seen so far."""

    @classmethod
    def start(
        cls,
        config: HeapConfig,
        catalog: ConfiguredAirbyteCatalog,
        input_stats: InputStats,
        clock: Clock | None = None,
        client_factory: Callable[..., HeapClient] = HeapClient,
        preview: PreviewSample | None = None,
        storage_client: object = None,
        deletion_client_factory: Callable[..., HeapClient] = UserDeletionClient,
    ) -> HeapWriter:
        """Wire one sync together: the clock, the shared senders, the routes, the log, the
        rejected-records bucket. A dry run (`config.dry_run`) sends nothing, stores nothing and
        emits no state; `preview` collects its first items for the `preview` command;
        `storage_client` replaces the bucket's S3 client, the factories Heap's (tests).
        Raises ConfigError (or activation.CatalogError) when the config and the catalog give
        no usable mapping."""
        clock = clock or SyncClock()
        stats = SyncStats(input_stats, started=clock.now())
        output: list[Output] = []
        log = SyncLog(stats, clock, output, dry_run=config.dry_run, preview=preview)
        pool = SenderPool(
            config.max_concurrent_requests,
            clock,
            while_waiting=lambda: log.progress_while_blocked(pool.in_flight),
        )
        rejected = None
        sending: ToHeap | DryRun
        if config.dry_run:  # the one place the choice is made
            sending = DryRun(config.app_id, preview)
        else:
            if config.object_storage is not None:
                rejected = RejectedRecords(
                    config.object_storage,
                    catalog_sync_id(catalog),
                    clock,
                    RetryPolicy(config.max_retry_seconds),
                    client=storage_client,
                )
                log.rejected_records_go_to(rejected.prefix())
            sending = ToHeap(config, clock, client_factory, rejected, deletion_client_factory)
        routes = Routes(config, catalog, clock, pool, sending)
        if not (config.default_mapping or config.stream_mappings or routes.streams.has_mappings()):
            raise no_mapping_error()
        gate = StateGate(withhold=sending.withholds_states)
        writer = cls(routes, pool, stats, log, output, gate, rejected)
        if config.dry_run:
            log.dry_run_started()
        for entry in routes.streams.unmatched_entries():
            log.stream_entry_unmatched(entry)
        for warning in routes.schema_warnings():
            log.warn(warning)
        if config.pacing_time_scale != 1.0:
            log.pacing_scaled(config.pacing_time_scale)
        return writer

    # -- the loop ---------------------------------------------------------------------------
    def run(self, messages: Iterable[Message]) -> Iterator[Output]:
        """Feed every message in and yield the output as it is produced; then the summary.

        However the loop ends (the end of the input, an error in a batch, Ctrl-C or SIGTERM
        raised while waiting), sending stops and every state whose batches are acknowledged
        goes out before the error travels on: acknowledged progress is never thrown away.
        """
        try:
            for message in messages:
                self.process(message)
                if self.output:
                    yield from self.take_output()
            self.finish()
        except GeneratorExit:
            self.stop()
            raise
        except BaseException as error:
            self.stop(error)
            yield from self.take_output()
            yield from self.summary()
            raise
        finally:
            self.close()
        yield from self.take_output()
        yield from self.summary()

    # -- input ------------------------------------------------------------------------------
    def process(self, message: Message) -> None:
        """Runs once per message; a RECORD is handled inline, with plain attribute and dict
        operations, since this is the per-record path. An `IDLE` (stdin silent for a while)
        only gives held states and the progress line their chance."""
        if message is IDLE:
            self._on_idle()
            return
        stats = self.stats
        stats.messages += 1
        if message.type == RECORD:
            record = message.record
            stats.records += 1
            row = stats.records
            stream = (record.namespace, record.stream)
            known = self._known.get(stream)
            if known is None:
                known = self._admit(stream)
            known.tally.received += 1
            route = known.route
            if route is None:
                self._count_ignored(known)
            else:
                invalid = route.process_record(record.data, row, known.stream_key)
                if invalid is not None:
                    known.tally.invalid += 1
                    self._log.invalid_row(row, invalid.reason)
                    if self._rejected is not None:
                        self._rejected.add(
                            record.namespace,
                            record.stream,
                            row,
                            record.data,
                            invalid_reason(invalid.reason, invalid.column, invalid.rule),
                        )
                if row % PROGRESS_CHECK_EVERY == 0:
                    self._progress()
        elif message.type == STATE:
            self.process_state(message)
        if self._gate.holding and self._pool.batches_ended():
            self._release_states()

    def process_state(self, state: StateMessage) -> None:
        """Drain on state: the pending batches it depends on leave now; the state waits for
        their acknowledgement, and its chunk's tallies are closed."""
        if state.kind is StateKind.STREAM:
            key = self._streams.catalog_stream(state.stream) or state.stream
            keys = [key]
        else:
            key = EVERY_STREAM
            keys = list(self._tallies)
        waits = []
        tallies = []
        for chunk_key in keys:
            route = self._routes.built_route(chunk_key)
            if route is not None:
                waits.append((route.batcher, route.batcher.drain()))
            tallies.append(self._close_chunk(chunk_key))
        self._gate.hold(HeldState(state, waits, tallies, key))
        self._release_states()
        self._progress()

    def _on_idle(self) -> None:
        if self._gate.holding and self._pool.batches_ended():
            self._release_states()
        self._progress()

    def finish(self) -> None:
        """End of input: everything is sent and acknowledged, then the remaining states go out."""
        for route in self._routes.built:
            self._log_column_warnings(route, final=True)
            route.batcher.drain()
        self._pool.finish()
        for route in self._routes.built:
            route.batcher.settle_all()
        self._release_states()
        if self._rejected is not None:
            self._rejected.flush()  # the rows after the last state, which no state covers
        self._report_rejections()

    def stop(self, error: BaseException | None = None) -> None:
        """The sync is ending early, on `error`: stop sending, then release every state whose
        batches are acknowledged, without raising the error; it is already on its way. Unless
        Heap refusing most records is the cause, a refusal can no longer be part of such a
        failure, so every finished batch is settled now (`settle_all`) and acknowledged once
        the batches before it are; when it is the cause, no state passes the records Heap
        refused."""
        self._pool.abort()
        causes = (error, self._pool.fatal_error)
        if not any(isinstance(cause, HeapRefusesMost) for cause in causes):
            for route in self._routes.built:
                route.batcher.settle_all(raise_errors=False)
        self._release_states(ending=True)
        self._report_rejections()

    def close(self) -> None:
        self._routes.close()
        if self._rejected is not None:
            self._rejected.close()

    # -- output -----------------------------------------------------------------------------
    def take_output(self) -> list[Output]:
        taken = self.output[:]
        self.output.clear()
        return taken

    def summary(self) -> list[AirbyteMessage]:
        return self._log.summary(self._routes.paced_seconds, self._gate.withheld, self._rejected)

    # -- internals ----------------------------------------------------------------------------
    def _admit(self, stream: StreamId) -> _Stream:
        catalog_stream = self._streams.catalog_stream(stream)
        key = catalog_stream or stream
        route = self._routes.route_for(catalog_stream)
        if route is Ignored.NOT_IN_CATALOG:
            self._log.stream_not_in_catalog(stream[1])
        elif route is Ignored.NO_MAPPING:
            self._log.stream_without_mapping(stream[1])
        elif all(known is not route.stats for known in self.stats.routes):
            self.stats.routes.append(route.stats)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = ChunkTally()
        if route.__class__ is Route:
            route.batcher.tally = tally
        known = self._known[stream] = _Stream(stream, key, route, tally)
        return known

    def _close_chunk(self, key: StreamId) -> ChunkTally:
        """The tally of a stream's chunk that a state now reports; its later records start a
        new one (the route's pending batch was drained first, so no batch spans two chunks)."""
        closed = self._tallies.get(key) or ChunkTally()
        fresh = self._tallies[key] = ChunkTally()
        route = self._routes.built_route(key)
        if route is not None:
            route.batcher.tally = fresh
        for known in self._known.values():
            if known.key == key:
                known.tally = fresh
        return closed

    def _count_ignored(self, known: _Stream) -> None:
        name = known.key[1]
        if known.ignored is Ignored.NOT_IN_CATALOG:
            self.stats.ignored_streams[name] += 1
        else:
            self.stats.unmapped_streams[name] += 1

    def _log_column_warnings(self, route: Route, final: bool = False) -> None:
        """Once a route has sampled its first records (or at the end, whatever it saw)."""
        if final or not route.sampling_columns:
            for warning in route.column_report.warnings():
                self._log.warn(warning)

    def _release_states(self, ending: bool = False) -> None:
        """Emit the states that are ready, once the rejected records before them are stored:
        a state never passes rows that are neither in Heap nor in the user's bucket. When the
        sync is ending and the bucket fails, those states stay unsaid; the sync's own error is
        already on its way, and the bucket's is in the log."""
        released = self._gate.release(ending)
        if released and self._rejected is not None:
            try:
                self._rejected.flush()
            except ObjectStorageError as error:
                if not ending:
                    raise
                self._log.states_not_stored(error)
                released = []
        if released:
            self._report_rejections()
            self.output += released
            self.stats.states_emitted += len(released)

    def _report_rejections(self) -> None:
        """Rows Heap refused, and the requests it accepted with a receipt (deletions)."""
        for route in self._routes.built:
            delivery = route.stats.delivery
            self._log.rejected_rows(delivery.take_new_rejections())
            self._log.deletions_accepted(route.stats.name, delivery.take_new_receipts())

    def _progress(self) -> None:
        self._report_rejections()
        for route in self._routes.built:
            self._log_column_warnings(route)
        self._log.progress(self._pool.in_flight)
