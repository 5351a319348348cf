"""One sync's dispatch: each RECORD to its stream's route, each STATE to the gate.

`destination.write` feeds every message in; the writer collects what must go back out (LOG and
STATE messages, in order) and the destination yields it. All output is produced on the main
thread; the sending threads only count. The writer builds nothing itself beyond wiring the parts
together in `start`, and formats no text (that is `sync_log`'s).
"""

from __future__ import annotations

from collections.abc import Callable

from airbyte_cdk.models import (
    AirbyteMessage,
    AirbyteStateStats,
    ConfiguredAirbyteCatalog,
    Type,
)

from destination_heap_analytics.client import HeapClient
from destination_heap_analytics.config import HeapConfig, StreamId
from destination_heap_analytics.dry_run import PreviewSample
from destination_heap_analytics.routes import Ignored, Route, Routes
from destination_heap_analytics.senders import SenderPool
from destination_heap_analytics.state_gate import StateCounter, StateGate, stream_of
from destination_heap_analytics.stats import InputStats, SyncStats
from destination_heap_analytics.sync_clock import Clock, SyncClock
from destination_heap_analytics.sync_log import SyncLog

RECORD = Type.RECORD
PROGRESS_CHECK_EVERY = 1024
"""Records between clock reads for the progress line."""


class HeapWriter:
    def __init__(
        self,
        routes: Routes,
        pool: SenderPool,
        stats: SyncStats,
        log: SyncLog,
        output: list[AirbyteMessage],
        gate: StateGate,
    ) -> None:
        """`output` is where the log writes its lines; states join them there, in order."""
        self.output = output
        self._routes = routes
        self._pool = pool
        self.stats = stats
        self._log = log
        self._gate = gate
        self._counter = StateCounter()
        self._count_for_state = self._counter.count
        self._known: dict[StreamId, Route | Ignored] = {}

    @classmethod
    def start(
        cls,
        config: HeapConfig,
        catalog: ConfiguredAirbyteCatalog,
        input_stats: InputStats,
        clock: Clock | None = None,
        client_factory: Callable[..., HeapClient] = HeapClient,
        preview: PreviewSample | None = None,
    ) -> HeapWriter:
        """Wire one sync together: the clock, the shared senders, the routes, the log. A dry
        run (`config.dry_run`) sends nothing and emits no state; `preview` collects its first
        items for the `preview` command."""
        clock = clock or SyncClock()
        stats = SyncStats(input_stats, started=clock.now())
        output: list[AirbyteMessage] = []
        log = SyncLog(stats, clock, output, dry_run=config.dry_run, preview=preview)
        pool = SenderPool(
            config.max_concurrent_requests,
            clock,
            while_waiting=lambda: log.progress_while_blocked(pool.in_flight),
        )
        routes = Routes(config, catalog, clock, pool, client_factory, preview)
        writer = cls(routes, pool, stats, log, output, StateGate(withhold=config.dry_run))
        if config.dry_run:
            log.dry_run_started()
        for warning in routes.schema_warnings():
            log.warn(warning)
        if config.pacing_time_scale != 1.0:
            log.warn(
                f"Rate-limit windows are scaled by {config.pacing_time_scale} "
                "(DESTINATION_HEAP_ANALYTICS_PACING_TIME_SCALE, for benchmarks and tests only)."
            )
        return writer

    # -- input ------------------------------------------------------------------------------
    def process(self, message: AirbyteMessage) -> None:
        """Runs once per message; a RECORD is handled inline, with plain attribute and dict
        operations, since this is the per-record path."""
        stats = self.stats
        stats.messages += 1
        if message.type == RECORD:
            record = message.record
            stats.records += 1
            row = stats.records
            stream = (record.namespace, record.stream)
            self._count_for_state(stream)
            route = self._known.get(stream)
            if route is None:
                route = self._admit(stream)
            if route.__class__ is Ignored:
                self._count_ignored(stream, route)
            else:
                invalid = route.process_record(record.data, row)
                if invalid is not None:
                    self._log.invalid_row(row, invalid)
                if row % PROGRESS_CHECK_EVERY == 0:
                    self._progress()
        elif message.type == Type.STATE:
            self.process_state(message)
        if self._gate.holding and self._pool.has_finished_batches:
            self._release_states()

    def process_state(self, message: AirbyteMessage) -> None:
        """Drain on state: the pending batches it depends on leave now; the state waits for
        their acknowledgement."""
        state = message.state
        count = self._counter.take(state, self.stats.records)
        state.destinationStats = AirbyteStateStats(recordCount=float(count))
        routes = self._routes.for_state(stream_of(state))
        self._gate.hold(message, [(route.loader, route.loader.drain()) for route in routes])
        self._release_states()
        self._progress()

    def finish(self) -> None:
        """End of input: everything is sent and acknowledged, then the remaining states go out."""
        for route in self._routes.built:
            self._log_column_warnings(route, final=True)
            route.loader.drain()
        self._pool.finish()
        for route in self._routes.built:
            route.loader.settle_all()
        self._release_states()
        self._report_rejections()

    def abort(self) -> None:
        self._pool.abort()
        self._report_rejections()

    def close(self) -> None:
        self._routes.close()

    # -- output -----------------------------------------------------------------------------
    def take_output(self) -> list[AirbyteMessage]:
        taken = self.output[:]
        self.output.clear()
        return taken

    def summary(self) -> list[AirbyteMessage]:
        return self._log.summary(self._routes.paced_seconds, self._gate.withheld)

    # -- internals ----------------------------------------------------------------------------
    def _admit(self, stream: StreamId) -> Route | Ignored:
        route = self._known[stream] = self._routes.route_for(stream)
        if route is Ignored.NOT_IN_CATALOG:
            self._log.stream_not_in_catalog(stream[1])
        elif route is Ignored.NO_MAPPING:
            self._log.stream_without_mapping(stream[1])
        else:
            self.stats.routes.append(route.stats)
        return route

    def _count_ignored(self, stream: StreamId, why: Ignored) -> None:
        if why is Ignored.NOT_IN_CATALOG:
            self.stats.ignored_streams[stream[1]] += 1
        else:
            self.stats.unmapped_streams[stream[1]] += 1

    def _log_column_warnings(self, route: Route, final: bool = False) -> None:
        """Once a route has sampled its first records (or at the end, whatever it saw)."""
        if final or not route.sampling_columns:
            for warning in route.column_report.warnings():
                self._log.warn(warning)

    def _release_states(self) -> None:
        self._pool.has_finished_batches = False
        released = self._gate.release()
        if released:
            self._report_rejections()
            self.output += released
            self.stats.states_emitted += len(released)

    def _report_rejections(self) -> None:
        for route in self._routes.built:
            self._log.rejected_rows(route.stats.delivery.take_new_rejections())

    def _progress(self) -> None:
        self._report_rejections()
        for route in self._routes.built:
            self._log_column_warnings(route)
        self._log.progress(self._pool.in_flight)
