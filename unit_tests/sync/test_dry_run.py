"""Dry run pieces: a batch counted as the request it would have been, the shape of items without
values or undeclared names, and the preview sample kept in input order."""

from __future__ import annotations

import json

import pytest

from destination_heap_analytics.config.settings import ApiType
from destination_heap_analytics.counters import DeliveryStats
from destination_heap_analytics.delivery.batch_delivery import Batch
from destination_heap_analytics.mapping.transformer import ITEM_SHAPES
from destination_heap_analytics.sync.dry_run import (
    SHAPES_SHOWN,
    UNLISTED,
    DryRunDelivery,
    PreviewSample,
    describe_shape,
)

ITEM = {
    "identity": "jane@example.com",
    "event": "Order Completed",
    "properties": {"total": 12.5, "paid": True, "note": "leave at door", "jane@example.com": 1},
    "idempotency_key": "k" * 32,
}


def test_a_shape_has_names_types_and_lengths_and_never_values():
    shape = describe_shape(ITEM, frozenset({"total", "paid", "note"}))
    assert shape == (
        "identity: text(16), event: text(15), properties: {total: number, paid: boolean, "
        f"note: text(13), {UNLISTED}: number}}, idempotency_key: text(32)"
    )
    assert "jane" not in shape and "door" not in shape and "12.5" not in shape


@pytest.mark.parametrize("api_type", list(ApiType))
def test_a_shape_names_every_field_of_each_api_types_item_and_no_other_key(api_type):
    names = ITEM_SHAPES[api_type].names
    item = {name: {} if name == "properties" else "v" for name in names}
    shape = describe_shape({**item, "jane@example.com": "v"}, frozenset())
    shown = [part.split(":")[0] for part in shape.split(", ")]
    assert shown == [*names, UNLISTED]


def test_list_positions_match_the_declared_name_with_0():
    shape = describe_shape({"properties": {"lines.7.sku": "x"}}, frozenset({"lines.0.sku"}))
    assert shape == "properties: {lines.7.sku: text(1)}"


def test_a_dry_run_batch_is_counted_as_one_request_and_its_first_shapes_kept():
    stats, shapes, preview = DeliveryStats(), [], PreviewSample(limit=2)
    delivery = DryRunDelivery(
        stats, "https://h/api/track", "11", "events", frozenset(), shapes, preview
    )

    delivery.deliver(Batch(1, [ITEM] * 2, [5, 6]))
    delivery.deliver(Batch(2, [ITEM] * 3, [7, 8, 9]))

    assert (stats.planned_items, stats.planned_requests, stats.delivered) == (5, 2, 0)
    assert len(shapes) == SHAPES_SHOWN
    assert delivery.settled(Batch(1, [], []))
    body = {"app_id": "11", "events": [ITEM]}
    assert preview.lines() == [
        {"endpoint": "https://h/api/track", "body": body},
        {"endpoint": "https://h/api/track", "body": body},
    ]


def test_the_single_form_previews_the_single_body():
    preview = PreviewSample(limit=1)
    DryRunDelivery(DeliveryStats(), "u", "11", None, frozenset(), [], preview).deliver(
        Batch(1, [ITEM], [1])
    )
    assert preview.lines() == [{"endpoint": "u", "body": {"app_id": "11", **ITEM}}]


def test_the_preview_keeps_the_first_items_and_invalid_rows_in_input_order():
    preview = PreviewSample(limit=3)
    for row in (9, 4, 12, 2, 7):  # batches of several streams arrive out of input order
        preview.item(row, "u", {"row": row})
    for row in (1, 5, 8, 30):
        preview.invalid(row, "user is missing or null")

    lines = preview.lines()

    assert [line.get("row", line.get("body", {}).get("row")) for line in lines] == [1, 2, 4, 5, 7]
    assert lines[0] == {"invalid": "user is missing or null", "row": 1}
    json.dumps(lines)


def test_a_preview_of_0_items_keeps_nothing():
    preview = PreviewSample(limit=0)
    preview.item(1, "u", {"row": 1})
    preview.invalid(2, "user is missing or null")
    assert preview.lines() == []
