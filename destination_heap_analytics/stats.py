"""Counts for one sync and the lines that report them (progress and final summary).

Only counts, reasons, row numbers and column names appear here, never record contents.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from destination_heap_analytics.delivery import DeliveryStats
from destination_heap_analytics.transformer import TransformStats


@dataclass
class InputStats:
    """What the input reader saw before any message reached `write`."""

    skipped_lines: Counter = field(default_factory=Counter)
    repaired_lines: int = 0
    """Lines whose lone UTF-16 surrogates were replaced by U+FFFD."""

    def skip(self, reason: str) -> None:
        self.skipped_lines[reason] += 1

    @property
    def unparseable_lines(self) -> int:
        return self.skipped_lines.total()


@dataclass
class SyncStats:
    input: InputStats
    delivery: DeliveryStats
    transform: TransformStats
    messages: int = 0
    records: int = 0
    invalid: Counter = field(default_factory=Counter)
    ignored_streams: Counter = field(default_factory=Counter)
    states_emitted: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def totals_line(self) -> str:
        """0.1.0's exact final line (its Total Messages counts every input message)."""
        return (
            f"Total Messages: {self.messages}. Total Records: {self.records}. "
            f"Total loaded: {self.delivery.delivered}."
        )

    def summary_line(self, paced_seconds: float) -> str:
        delivery = self.delivery
        parts = [
            f"invalid records skipped: {_with_reasons(self.invalid)}",
            f"rejected by Heap: {_with_reasons(delivery.rejected)}",
            f"ignored (stream not in catalog): {_with_reasons(self.ignored_streams)}",
            f"unparseable input lines skipped: {_with_reasons(self.input.skipped_lines)}",
            f"lone surrogates replaced by U+FFFD: {self.input.repaired_lines} lines",
            f"values truncated to 1023 characters: {self.transform.truncated_values}",
            f"properties dropped: {_with_reasons(Counter(self.transform.dropped_properties))}",
            f"requests: {delivery.requests}",
            f"retries: {_with_reasons(delivery.retry_reasons)}",
            f"states emitted: {self.states_emitted}",
            f"waited for rate limits: {paced_seconds:.1f} s",
            f"elapsed: {self.elapsed:.2f} s",
        ]
        return "Sync summary: " + "; ".join(parts) + "."

    def progress_line(self, in_flight: int) -> str:
        delivered = self.delivery.delivered
        rate = delivered / self.elapsed if self.elapsed > 0 else 0.0
        return (
            f"Progress: {self.records} records read, {delivered} loaded ({rate:.0f} records/s), "
            f"{sum(self.invalid.values())} invalid, {self.delivery.rejected_total} rejected, "
            f"{self.delivery.retries} retries, {self.delivery.requests} requests, "
            f"{in_flight} batches in flight."
        )


def _with_reasons(counts: Counter) -> str:
    total = sum(counts.values())
    if not total:
        return "0"
    reasons = ", ".join(f"{reason}: {n}" for reason, n in counts.most_common())
    return f"{total} ({reasons})"
