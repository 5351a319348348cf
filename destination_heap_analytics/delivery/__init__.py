"""Getting items to Heap: batching (process an item, process a batch, drain on state), the pool
of sending threads, pacing, retries, isolating refused items, the rejection guard, and the
bucket of rejected records.

The names below are those of 0.3.0's `destination_heap_analytics.delivery` module, now in
`delivery.batch_delivery` and `counters`, offered here so that code importing the old module
still works.
"""

from destination_heap_analytics.counters import (
    MAX_REJECTION_REASONS,
    OTHER_REJECTION_REASONS,
    DeliveryStats,
    Rejection,
)
from destination_heap_analytics.delivery.batch_delivery import Batch, BatchDelivery

__all__ = [
    "MAX_REJECTION_REASONS",
    "OTHER_REJECTION_REASONS",
    "Batch",
    "BatchDelivery",
    "DeliveryStats",
    "Rejection",
]
