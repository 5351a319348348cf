"""Airbyte destination that loads records into Heap Analytics through its server-side APIs."""

from destination_heap_analytics import _compat
from destination_heap_analytics._version import __version__
from destination_heap_analytics.airbyte.destination import DestinationHeapAnalytics

_compat.install()

__all__ = ["DestinationHeapAnalytics", "__version__"]
