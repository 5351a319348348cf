"""Dry run and preview: everything a sync does up to the request, and nothing sent.

Heap has no delete, so a wrong mapping loaded once stays in Heap. A dry run reads, checks,
transforms and batches every record exactly as a real sync, and in place of each request counts
it and notes the shape of the first items: property names with value types and lengths, never
values. A property name is shown only when the mapping or the stream's schema in the catalog
names it: a key found only in the data (a map keyed by email) is data too.

`preview` (a local command) also shows the first items as they would be POSTed, values
included, for the user's own terminal; `PreviewSample` collects them.
"""

from __future__ import annotations

import heapq
import threading
from typing import Any

from destination_heap_analytics.config.settings import NO_PACING, ApiType, ColumnMapping, Pacing
from destination_heap_analytics.counters import DeliveryStats, RouteStats
from destination_heap_analytics.delivery.batch_delivery import Batch
from destination_heap_analytics.heap.client import request_body
from destination_heap_analytics.mapping.column_report import schema_paths
from destination_heap_analytics.mapping.transformer import ITEM_FIELD_NAMES

SHAPES_SHOWN = 3
"""Items per stream whose shape a dry run logs."""


class PreviewSample:
    """The first `limit` items and invalid records in input order, for `preview` to print.

    Items reach it in batch order from the sending threads, so it keeps the lowest rows seen.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: list[tuple[int, dict]] = []  # max-heap by row (negated)
        self._invalid: list[tuple[int, dict]] = []
        self._lock = threading.Lock()

    def item(self, row: int, endpoint: str, body: dict) -> None:
        self._keep(self._items, row, {"endpoint": endpoint, "body": body})

    def invalid(self, row: int, reason: str) -> None:
        self._keep(self._invalid, row, {"invalid": reason, "row": row})

    def lines(self) -> list[dict]:
        """Items and invalid records by row, up to the `limit`-th item."""
        items = [(-neg, line) for neg, _, line in self._items]
        invalid = [(-neg, line) for neg, _, line in self._invalid]
        if self.limit == 0:
            return []
        last_row = max(row for row, _ in items) if len(items) == self.limit else None
        shown = items + [(row, line) for row, line in invalid if last_row is None or row < last_row]
        return [line for _, line in sorted(shown, key=lambda entry: entry[0])]

    def _keep(self, kept: list, row: int, line: dict) -> None:
        if self.limit == 0:
            return
        with self._lock:
            entry = (-row, id(line), line)
            if len(kept) < self.limit:
                heapq.heappush(kept, entry)
            elif row < -kept[0][0]:
                heapq.heapreplace(kept, entry)


"""A dry run sends nothing, so it has nothing to pace; its batches keep the real sizes."""


class DryRun:
    """How batches leave in a dry run: nowhere. No HTTP client, no pacing, no state; each batch
    is counted as the request it would have been (`DryRunDelivery`). The other way is
    `routes.ToHeap`; `HeapWriter.start` chooses once."""

    withholds_states = True

    def __init__(self, app_id: str, preview: PreviewSample | None = None) -> None:
        """`preview` collects the first items for the `preview` command."""
        self._app_id = app_id
        self._preview = preview

    def client(self, api_type: ApiType, url: str, bulk_key: str | None) -> None:
        return None

    def pacing(self, pacing: Pacing) -> Pacing:
        return NO_PACING

    def delivery(
        self,
        mapping: ColumnMapping,
        json_schema: object,
        url: str,
        bulk_key: str | None,
        stats: RouteStats,
    ) -> DryRunDelivery:
        return DryRunDelivery(
            stats.delivery,
            url,
            self._app_id if mapping.api_type.form.app_id_in_body else None,
            bulk_key,
            known_property_names(mapping, json_schema),
            shapes=stats.shapes,
            preview=self._preview,
        )


class DryRunDelivery:
    """In place of `BatchDelivery`: a batch is counted as the request it would have been."""

    def __init__(
        self,
        stats: DeliveryStats,
        endpoint: str,
        app_id: str | None,
        bulk_key: str | None,
        known_names: frozenset[str],
        shapes: list[str],
        preview: PreviewSample | None = None,
    ) -> None:
        """`app_id` as the body carries it (None: not at all, the User Deletion API);
        `known_names`: property names the mapping or the catalog's schema gives (list
        positions as 0), the only ones a shape may show; `shapes` receives the description of
        the route's first items."""
        self._known_names = known_names
        self.shapes = shapes
        self._stats = stats
        self._endpoint = endpoint
        self._app_id = app_id
        self._bulk_key = bulk_key
        self._preview = preview
        self._lock = threading.Lock()

    def deliver(self, batch: Batch) -> None:
        self._stats.count_planned(len(batch.items))
        with self._lock:
            for item in batch.items[: SHAPES_SHOWN - len(self.shapes)]:
                self.shapes.append(describe_shape(item, self._known_names))
        if self._preview is not None:
            for row, item in zip(batch.rows, batch.items, strict=True):
                body = request_body(self._app_id, self._bulk_key, [item])
                self._preview.item(row, self._endpoint, body)

    def settled(self, batch: Batch) -> bool:
        return True


def known_property_names(mapping: ColumnMapping, json_schema: object) -> frozenset[str]:
    """Property names a dry run may show: the mapping's own, and the catalog schema's paths,
    also under a renamed object column (`identities as ident` → `ident.provider`)."""
    declared = schema_paths(json_schema)
    names = set(declared)
    for column in mapping.property_columns or ():
        names.add(column.name)
        prefix = f"{column.path.name}."
        names.update(
            column.name + path[len(column.path.name) :]
            for path in declared
            if path.startswith(prefix)
        )
    return frozenset(names)


UNLISTED = "<a key from the data>"


def describe_shape(item: dict, known_names: frozenset[str]) -> str:
    """`identity: text(17), event: text(15), properties: {total: number, …}`: names, types and
    lengths, never values; a property name nobody declared is not shown either."""
    parts = []
    for field, value in item.items():
        if field == "properties":
            shown = [
                f"{_shown_name(name, known_names)}: {_shape_of(v)}" for name, v in value.items()
            ]
            parts.append("properties: {" + ", ".join(shown) + "}")
        else:
            parts.append(f"{field if field in ITEM_FIELD_NAMES else UNLISTED}: {_shape_of(value)}")
    return ", ".join(parts)


def _shown_name(name: str, known_names: frozenset[str]) -> str:
    generic = ".".join("0" if part.isdigit() else part for part in name.split("."))
    return name if generic in known_names else UNLISTED


def _shape_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return f"text({len(value)})"
    return type(value).__name__
