"""The config: spec.json's one definition (`spec_definition`), the schema read from it
(`schema`), and the small immutable `HeapConfig` every run is given (`settings`).

The names below are those of 0.3.0's `destination_heap_analytics.config` module, now
`config.settings`, offered here so that code importing the old module still works.
"""

from destination_heap_analytics.config.schema import ConfigError
from destination_heap_analytics.config.settings import (
    LOOPBACK_NAMES,
    PACING_TIME_SCALE_ENV,
    SINGLE_COLUMN_FIELDS,
    ApiType,
    ColumnMapping,
    ColumnPath,
    HeapConfig,
    Pacing,
    PropertyColumn,
    RateLimit,
    StreamId,
    StreamMapping,
    endpoint_url,
    pacing_time_scale,
    parse_base_url,
    parse_config,
)

__all__ = [
    "LOOPBACK_NAMES",
    "PACING_TIME_SCALE_ENV",
    "SINGLE_COLUMN_FIELDS",
    "ApiType",
    "ColumnMapping",
    "ColumnPath",
    "ConfigError",
    "HeapConfig",
    "Pacing",
    "PropertyColumn",
    "RateLimit",
    "StreamId",
    "StreamMapping",
    "endpoint_url",
    "pacing_time_scale",
    "parse_base_url",
    "parse_config",
]
