"""Airbyte destination that loads records into Heap Analytics through its server-side APIs."""

from destination_heap_analytics.destination import DestinationHeapAnalytics

__all__ = ["DestinationHeapAnalytics"]
