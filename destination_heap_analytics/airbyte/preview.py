"""`preview`: the first Heap items a mapping would send, on the user's own terminal.

`python main.py preview --config C --catalog K [--limit N] < messages.jsonl` runs a dry run of the
input (nothing is sent, no state is emitted) and prints the first N items exactly as they would
be POSTed, one JSON object per line on stdout: the endpoint and the body, app_id included, one
item per body. An invalid record shows as `{"invalid": "<reason>", "row": n}`. A one-line summary
with the dry run's counts goes to stderr.

This command shows record values: it is meant for local use, on the user's own data and screen,
and is not part of the Airbyte protocol, so the platform never runs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import IO

import orjson
from airbyte_cdk.models import Level, Type

from destination_heap_analytics.airbyte.config_file import (
    ConfigFileError,
    read_catalog_file,
    read_config_file,
)
from destination_heap_analytics.airbyte.input_reader import read_messages, stdin_lines
from destination_heap_analytics.config.settings import ConfigError, parse_config
from destination_heap_analytics.counters import InputStats
from destination_heap_analytics.mapping.activation import CatalogError
from destination_heap_analytics.sync.dry_run import PreviewSample
from destination_heap_analytics.sync.sync_log import dry_run_line, summary_line
from destination_heap_analytics.sync.writer import HeapWriter
from destination_heap_analytics.sync_clock import SyncClock

DEFAULT_LIMIT = 10
SHOWN_LEVELS = frozenset({Level.WARN, Level.ERROR})
"""The sync's own lines that preview shows on stderr: its warnings (a column the data never
has, with its "Did you mean …?" hint); the counts come in the one summary line at the end."""


def run_preview(args: list[str], stdin: IO[bytes], stdout: IO[str], stderr: IO[str]) -> int:
    """Exit code 0, or 1 with one line on stderr when the config or catalog cannot be used
    (2, argparse's, for arguments it cannot read)."""
    options = _parser().parse_args(args)
    _log_to(stderr)
    sample = PreviewSample(options.limit)
    input_stats = InputStats()
    clock = SyncClock()
    try:
        config = parse_config(read_config_file(options.config), require_mapping=False)
        catalog = read_catalog_file(options.catalog)
        writer = HeapWriter.start(
            dataclasses.replace(config, dry_run=True), catalog, input_stats, clock, preview=sample
        )
    except (ConfigError, ConfigFileError, CatalogError) as error:
        print(f"preview: {error}", file=stderr)
        return 1
    messages = read_messages(stdin_lines(stdin), input_stats, logging.getLogger("airbyte"))
    for output in writer.run(messages):
        if output.type == Type.LOG and output.log.level in SHOWN_LEVELS:
            print(f"{output.log.level.value} {output.log.message}", file=stderr)
    for line in sample.lines():
        stdout.write(orjson.dumps(line).decode() + "\n")
    stats = writer.stats
    print(f"Preview: {dry_run_line(stats)} {summary_line(stats, 0.0, clock.now())}", file=stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preview",
        description="Print the first Heap items a mapping would send; nothing is sent.",
    )
    parser.add_argument("--config", required=True, help="path to the JSON config")
    parser.add_argument("--catalog", required=True, help="path to the configured catalog")
    parser.add_argument(
        "--limit",
        type=item_count,
        default=DEFAULT_LIMIT,
        help="items to print (default 10; 0 prints none, only the summary)",
    )
    return parser


def item_count(text: str) -> int:
    """`--limit`: a whole number of items, 0 or more (argparse reports a ValueError as
    "invalid item_count value" and exits with code 2)."""
    count = int(text)
    if count < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return count


def _log_to(stream: IO[str]) -> None:
    """Warnings as plain text on stderr: stdout holds only the items."""
    airbyte = logging.getLogger("airbyte")
    for handler in list(airbyte.handlers):
        airbyte.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    airbyte.addHandler(handler)
    airbyte.propagate = False
