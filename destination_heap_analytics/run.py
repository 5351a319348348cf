"""Console entry point `destination-heap-analytics`."""

import gc
import sys

from destination_heap_analytics.airbyte.destination import DestinationHeapAnalytics

GC_GENERATION0_THRESHOLD = 50_000
"""Records become acyclic dicts and strings that the garbage collector never needs to find, yet
with the default threshold (700) it rescans the thousands of items in flight so often that it
costs about a fifth of the CPU of a bulk sync (see docs/performance.md)."""


def tune_garbage_collector() -> None:
    """Freeze what the imports created and collect young objects less often.

    Reference counting still frees every record as soon as its batch is acknowledged; only the
    cycle detector runs less often.
    """
    gc.freeze()
    gc.set_threshold(GC_GENERATION0_THRESHOLD, 50, 100)


def run() -> None:
    tune_garbage_collector()
    DestinationHeapAnalytics().run(sys.argv[1:])
