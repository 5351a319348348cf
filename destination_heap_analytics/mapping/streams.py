"""Which stream is this: the one place that matches records, states and mappings to streams.

A record, a STREAM state and a `streams` entry of the config each name a stream by
(namespace, name), and the three must agree, or a state could count the records of another
stream, or a staging stream could be loaded with production's mapping. Every match goes through
`StreamMatcher`:

- A record or a state descriptor is its catalog stream when the catalog has that exact
  (namespace, name). Otherwise, as some platforms rewrite namespaces (or leave them out of
  states), it is the catalog's one stream of that name; when the catalog has none or several of
  that name, it is no catalog stream at all.
- A catalog stream's mapping is the one its catalog entry names (`destination_object_name`, data
  activation: activation.py). Otherwise it is the `streams` entry of the same name and
  namespace, else the entry of that name without a namespace, else the first entry of that name
  under another namespace (a rewritten one), provided this is the catalog's only stream of that
  name; else the top-level `api`; else none.
"""

from __future__ import annotations

from collections.abc import Mapping

from airbyte_cdk.models import ConfiguredAirbyteCatalog

from destination_heap_analytics.config.settings import (
    ColumnMapping,
    ConfigError,
    HeapConfig,
    StreamId,
    stream_label,
)
from destination_heap_analytics.mapping.activation import activated_stream
from destination_heap_analytics.mapping.activation import mapping_of as activated_mapping


class StreamMatcher:
    def __init__(self, catalog: ConfiguredAirbyteCatalog, config: HeapConfig) -> None:
        """Raises ConfigError or activation.CatalogError when a stream's mapping cannot be
        built (data activation: the catalog names one of Heap's objects)."""
        self._configured = {(s.stream.namespace, s.stream.name): s for s in catalog.streams}
        self.schemas: Mapping[StreamId, object] = {
            stream: configured.stream.json_schema for stream, configured in self._configured.items()
        }
        self._by_name: dict[str, list[StreamId]] = {}
        for stream in self.schemas:
            self._by_name.setdefault(stream[1], []).append(stream)
        self._config = config
        self._mappings = {stream: self._mapping_of(stream) for stream in self.schemas}

    def catalog_stream(self, stream: StreamId) -> StreamId | None:
        """The catalog stream a record's or a state's (namespace, name) belongs to, or None."""
        if stream in self.schemas:
            return stream
        same_name = self._by_name.get(stream[1], ())
        return same_name[0] if len(same_name) == 1 else None

    def mapping(self, catalog_stream: StreamId) -> ColumnMapping | None:
        """The mapping of a catalog stream (see the module docstring), None when it has none."""
        return self._mappings.get(catalog_stream)

    def schema(self, catalog_stream: StreamId) -> object:
        return self.schemas.get(catalog_stream)

    def unmatched_entries(self) -> list[str]:
        """`streams` entries that apply to no catalog stream, for one warning each at start."""
        claimed = {id(m) for m in self._mappings.values() if m is not None}
        return [
            stream_label((entry.namespace, entry.stream))
            for entry in self._config.stream_mappings
            if id(entry.mapping) not in claimed
        ]

    def has_mappings(self) -> bool:
        """Does any catalog stream have a mapping (from the config or the catalog)?"""
        return any(mapping is not None for mapping in self._mappings.values())

    def _mapping_of(self, stream: StreamId) -> ColumnMapping | None:
        configured = self._configured[stream]
        entry = self._entry_of(stream)
        if activated_stream(configured):
            if entry is not None:
                raise ConfigError(
                    f"streams[{entry}].stream",
                    f"maps stream '{stream_label(stream)}', which the configured catalog maps to "
                    f"Heap's '{configured.destination_object_name}' object in Airbyte's mapping "
                    "screen; remove the entry, or the stream's mapping there",
                )
            return activated_mapping(configured)
        if entry is not None:
            return self._config.stream_mappings[entry].mapping
        return self._config.default_mapping

    def _entry_of(self, stream: StreamId) -> int | None:
        """The position of the `streams` entry that maps a catalog stream, by the rules of the
        module docstring; None when no entry does."""
        namespace, name = stream
        named = [
            (index, entry)
            for index, entry in enumerate(self._config.stream_mappings)
            if entry.stream == name
        ]
        for index, entry in named:
            if entry.namespace == namespace:
                return index
        for index, entry in named:
            if entry.namespace is None:
                return index
        if named and len(self._by_name[name]) == 1:  # an entry under a rewritten namespace
            return named[0][0]
        return None
