"""What the sync tells the user while it runs and when it ends, as Airbyte LOG messages.

Everything the writer reports goes through here: skipped and rejected rows (the first few per
reason, by row number), streams that are ignored, the progress line, and the final summary with
0.1.0's `Total Messages…` line. It reads counts only; no record contents reach it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Protocol

from airbyte_cdk.models import AirbyteLogMessage, AirbyteMessage, Level, Type

from destination_heap_analytics.config.settings import ApiType
from destination_heap_analytics.counters import Accepted, Rejection, RouteStats, SyncStats
from destination_heap_analytics.heap import limits as heap_limits
from destination_heap_analytics.sync.dry_run import PreviewSample
from destination_heap_analytics.sync_clock import Clock

logger = logging.getLogger("airbyte")

PROGRESS_INTERVAL_SECONDS = 10.0
LOGGED_ROWS_PER_REASON = 10
"""Rows logged individually per skip reason; the rest are counted in the summary."""

TRUNCATED_VALUES = f"values truncated to {heap_limits.MAX_PROPERTY_LENGTH} characters"
"""How the summary and a dry run name the count of values cut to Heap's length."""


class SyncLog:
    def __init__(
        self,
        stats: SyncStats,
        clock: Clock,
        output: list[AirbyteMessage],
        dry_run: bool = False,
        preview: PreviewSample | None = None,
    ) -> None:
        """Lines are appended to `output`, the writer's queue of messages for Airbyte; a dry
        run's summary says what would have been sent; `preview` also receives invalid rows."""
        self._dry_run = dry_run
        self._preview = preview
        self._stats = stats
        self._clock = clock
        self._output = output
        self._logged_reasons: Counter = Counter()
        self._next_progress = clock.now() + PROGRESS_INTERVAL_SECONDS

    def log(self, level: Level, text: str) -> None:
        self._output.append(log_message(level, text))

    def warn(self, text: str) -> None:
        self.log(Level.WARN, text)

    # -- rows ------------------------------------------------------------------------------------
    def invalid_row(self, row: int, reason: str) -> None:
        self._row(f"Row {row} skipped as invalid: {reason}.", reason)
        if self._preview is not None:
            self._preview.invalid(row, reason)

    def rejected_rows(self, rejections: Iterable[Rejection]) -> None:
        for rejection in rejections:
            reason = f"HTTP {rejection.status}: {rejection.message}"
            self._row(f"Row {rejection.row} rejected by Heap ({reason}).", reason)

    def deletions_accepted(self, stream: str, accepted: Iterable[Accepted]) -> None:
        """Every deletion request Heap accepted, with its id and size, so that a privacy team
        can prove it was made (the id is Heap's, not personal data; client.py checks its
        form)."""
        for done in accepted:
            request_id = done.receipt.deletion_request_id
            if request_id is None:
                text = (
                    f"Heap accepted a deletion request of {done.items} users of stream "
                    f"'{stream}'; its answer carried no deletion_request_id in the expected "
                    "form, so none is logged."
                )
            else:
                text = (
                    f"Heap accepted deletion request {request_id} of {done.items} users of "
                    f"stream '{stream}'."
                )
            self.log(Level.INFO, text)

    def _row(self, text: str, reason: str) -> None:
        self._logged_reasons[reason] += 1
        seen = self._logged_reasons[reason]
        if seen <= LOGGED_ROWS_PER_REASON:
            if seen == LOGGED_ROWS_PER_REASON:
                text += " Further rows with this reason are counted in the summary only."
            self.warn(text)

    # -- streams ---------------------------------------------------------------------------------
    def stream_not_in_catalog(self, name: str) -> None:
        self.warn(
            f"Stream '{name}' is not in the configured catalog; its records are ignored and "
            "counted in the summary."
        )

    def pacing_scaled(self, scale: float) -> None:
        self.warn(
            f"Rate-limit windows are scaled by {scale} "
            "(DESTINATION_HEAP_ANALYTICS_PACING_TIME_SCALE, for benchmarks and tests only)."
        )

    def states_not_stored(self, error: Exception) -> None:
        """The bucket failed while a stopping sync stored the rejected records before its last
        states: those states are not emitted (their rejected rows are not all stored)."""
        self.warn(f"{error}. The states that were ready are not emitted.")

    def stream_entry_unmatched(self, entry: str) -> None:
        self.warn(
            f"The 'streams' entry for '{entry}' matches no stream of the configured catalog, so "
            "it is not used; check its stream name and namespace."
        )

    def stream_without_mapping(self, name: str) -> None:
        self.warn(
            f"Stream '{name}' has no mapping: it is not listed in 'streams' and there is no "
            "top-level 'api'. Its records are ignored and counted in the summary."
        )

    # -- progress --------------------------------------------------------------------------------
    def progress(self, in_flight: int) -> None:
        """A progress line, at most every PROGRESS_INTERVAL_SECONDS."""
        now = self._clock.now()
        if now >= self._next_progress:
            self._next_progress = now + PROGRESS_INTERVAL_SECONDS
            self.log(Level.INFO, progress_line(self._stats, in_flight, now))

    def progress_while_blocked(self, in_flight: int) -> None:
        """The senders are all busy (slow or retrying Heap), so the writer cannot yield: the
        line goes straight to the Airbyte logger, from the same main thread."""
        now = self._clock.now()
        self._next_progress = now + PROGRESS_INTERVAL_SECONDS
        logger.info(progress_line(self._stats, in_flight, now))

    # -- summary ---------------------------------------------------------------------------------
    def dry_run_started(self) -> None:
        self.log(Level.INFO, f"Dry run: {DRY_RUN_PROMISE}.")

    def summary(
        self, paced_seconds: float, states_withheld: int = 0, rejected: StoredCounts | None = None
    ) -> list[AirbyteMessage]:
        """`rejected`: the bucket's counts, when rejected records are stored."""
        stats = self._stats
        lines = [totals_line(stats), summary_line(stats, paced_seconds, self._clock.now())]
        if self._dry_run:
            lines += [dry_run_stream_line(route) for route in stats.routes]
            lines += [
                dry_run_line(stats),
                dry_run_rejections_line(stats),
                f"Dry run complete: {DRY_RUN_PROMISE} ({states_withheld} states withheld).",
            ]
        elif len(stats.routes) > 1:
            lines += [stream_line(route, rejected) for route in stats.routes]
        deleting = [r for r in stats.routes if r.api_type is ApiType.DELETE_USERS]
        if deleting and not self._dry_run:
            lines.append(deletions_line(deleting))
        if rejected is not None:
            lines.append(stored_line(rejected))
        return [log_message(Level.INFO, line) for line in lines]

    def rejected_records_go_to(self, prefix: str) -> None:
        self.log(Level.INFO, f"Rejected records are stored under {prefix}")


DRY_RUN_PROMISE = (
    "records are read, checked and transformed as in a real sync, but nothing is sent to Heap "
    "and no state is emitted, so the next real sync starts from the same place"
)


class StoredCounts(Protocol):
    """What the summary reads of the rejected-records bucket."""

    stored: int
    objects: int

    def prefix(self) -> str: ...

    def folder(self, namespace: str | None, stream: str) -> str: ...


def stored_line(rejected: StoredCounts) -> str:
    """Where the records that did not reach Heap went, and how many are there."""
    return (
        f"Rejected records stored: {rejected.stored} records in {rejected.objects} objects "
        f"under {rejected.prefix()}"
    )


def dry_run_rejections_line(stats: SyncStats) -> str:
    """A dry run knows the records its own rules refuse; what Heap would refuse only a real
    sync can tell."""
    return (
        f"Dry run: {stats.invalid.total()} records would be rejected by the connector's own "
        "rules (and stored in the rejected-records bucket, when one is configured); records "
        "Heap itself refuses are known only in a real sync."
    )


def deletions_line(routes: list[RouteStats]) -> str:
    """What Heap accepted to delete; each request's id is in its own line of the log."""
    users = sum(route.delivery.delivered for route in routes)
    requests = sum(route.delivery.receipts for route in routes)
    return (
        f"Deletions: Heap accepted {requests} deletion requests for {users} users (each "
        "request's deletion_request_id is logged above)."
    )


def dry_run_line(stats: SyncStats) -> str:
    return f"Dry run: would load {stats.planned_items} items in {stats.planned_requests} requests."


def dry_run_stream_line(route: RouteStats) -> str:
    """What one stream would have sent: counts, and the shape of its first items."""
    delivery, transform = route.delivery, route.transform
    would = "delete" if route.api_type is ApiType.DELETE_USERS else "load"
    noun = "users" if route.api_type is ApiType.DELETE_USERS else "items"
    line = (
        f"Dry run, stream '{route.name}' ({route.api_type.value}): {route.records} records, "
        f"would {would} {delivery.planned_items} {noun} in {delivery.planned_requests} "
        "requests; "
        f"invalid {with_reasons(route.invalid)}; {TRUNCATED_VALUES}: "
        f"{transform.truncated_values}; properties dropped: "
        f"{with_reasons(Counter(transform.dropped_properties))}."
    )
    for number, shape in enumerate(route.shapes, start=1):
        line += f" Item {number}: {shape}."
    return line


def totals_line(stats: SyncStats) -> str:
    """0.1.0's exact final line (its Total Messages counts every input message)."""
    return (
        f"Total Messages: {stats.messages}. Total Records: {stats.records}. "
        f"Total loaded: {stats.delivered}."
    )


def summary_line(stats: SyncStats, paced_seconds: float, now: float) -> str:
    parts = [
        f"invalid records skipped: {with_reasons(stats.invalid)}",
        f"rejected by Heap: {with_reasons(stats.rejected)}",
        f"ignored (stream not in catalog): {with_reasons(stats.ignored_streams)}",
    ]
    if stats.unmapped_streams:
        parts.append(f"ignored (stream without a mapping): {with_reasons(stats.unmapped_streams)}")
    parts += [
        f"unparseable input lines skipped: {with_reasons(stats.input.skipped_lines)}",
        f"lone surrogates replaced by U+FFFD: {stats.input.repaired_lines} lines",
        f"{TRUNCATED_VALUES}: {stats.truncated_values}",
        f"properties dropped: {with_reasons(stats.dropped_properties)}",
        f"requests: {stats.requests}",
        f"retries: {with_reasons(stats.retry_reasons)}",
        f"states emitted: {stats.states_emitted}",
        f"waited for rate limits: {paced_seconds:.1f} s",
        f"elapsed: {now - stats.started:.2f} s",
    ]
    return "Sync summary: " + "; ".join(parts) + "."


def stream_line(route: RouteStats, rejected: StoredCounts | None = None) -> str:
    """One stream's share of the summary, when a sync has several; with the bucket's folder of
    its rejected records, when it has some and a bucket is configured."""
    refused = route.delivery.rejected_counts()
    line = (
        f"Stream '{route.name}' ({route.api_type.value}): {route.records} records, "
        f"{route.delivery.delivered} loaded, invalid {with_reasons(route.invalid)}, "
        f"rejected {with_reasons(refused)}, "
        f"{route.delivery.requests} requests."
    )
    if rejected is not None and (route.invalid or refused):
        line += f" Its rejected records are under {rejected.folder(*route.stream)}"
    return line


def progress_line(stats: SyncStats, in_flight: int, now: float) -> str:
    delivered = stats.delivered
    elapsed = now - stats.started
    rate = delivered / elapsed if elapsed > 0 else 0.0
    line = (
        f"Progress: {stats.records} records read, {delivered} loaded ({rate:.0f} records/s), "
        f"{stats.invalid.total()} invalid, {stats.rejected.total()} rejected, "
        f"{sum(r.delivery.retries for r in stats.routes)} retries, {stats.requests} requests, "
        f"{in_flight} batches in flight."
    )
    if len(stats.routes) > 1:
        line += (
            " By stream: "
            + ", ".join(
                f"{route.name} {route.delivery.delivered}/{route.records} loaded"
                for route in stats.routes
            )
            + "."
        )
    return line


def with_reasons(counts: Counter) -> str:
    total = counts.total()
    if not total:
        return "0"
    reasons = ", ".join(f"{reason}: {n}" for reason, n in counts.most_common())
    return f"{total} ({reasons})"


def log_message(level: Level, text: str) -> AirbyteMessage:
    return AirbyteMessage(type=Type.LOG, log=AirbyteLogMessage(level=level, message=text))
