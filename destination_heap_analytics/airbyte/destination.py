"""The Airbyte commands (spec, check, discover, write): orchestration only; the work is in the
writer."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

import orjson
from airbyte_cdk.destinations import Destination
from airbyte_cdk.models import (
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteMessageSerializer,
    ConfiguredAirbyteCatalog,
    FailureType,
    Status,
    Type,
)
from airbyte_cdk.utils.airbyte_secrets_utils import get_secrets, update_secrets
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from typing_extensions import override

from destination_heap_analytics.airbyte.cli import (
    config_error,
    ends_cleanly,
    failed_status,
    stop_on_sigterm,
    traced_error,
)
from destination_heap_analytics.airbyte.config_file import (
    ConfigFileError,
    read_catalog_file,
    read_config_file,
)
from destination_heap_analytics.airbyte.connection_check import check_connection, check_deletion_key
from destination_heap_analytics.airbyte.input_reader import read_messages, stdin_lines
from destination_heap_analytics.airbyte.preview import run_preview
from destination_heap_analytics.config.settings import ConfigError, HeapConfig, parse_config
from destination_heap_analytics.counters import InputStats
from destination_heap_analytics.delivery.rejected_records import (
    ObjectStorageError,
    check_object_storage,
)
from destination_heap_analytics.delivery.rejection_guard import HeapRefusesMost
from destination_heap_analytics.delivery.retry import RetriesExhausted
from destination_heap_analytics.heap.client import HeapConfigurationError
from destination_heap_analytics.mapping.activation import CatalogError
from destination_heap_analytics.protocol.destination_catalog import destination_catalog_line
from destination_heap_analytics.protocol.state_message import EmittedState, StateMessage
from destination_heap_analytics.sync.writer import HeapWriter, Message, Output

logger = logging.getLogger("airbyte")


class DestinationHeapAnalytics(Destination):
    def __init__(self) -> None:
        self._input_stats = InputStats()

    @override
    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        """Never raises: the CDK does not turn an exception in check into a FAILED status."""
        try:
            settings = parse_config(config, require_mapping=False)  # the catalog may map
            if settings.dry_run:
                return AirbyteConnectionStatus(status=Status.SUCCEEDED, message=DRY_RUN_CHECK)
            logger.info(f"Checking Heap at {settings.base_url}")
            problem = check_connection(settings)
            if problem is None and settings.api_key is not None:
                logger.info("Checking the User Deletion API's key (api_key); nothing is deleted")
                problem = check_deletion_key(settings)
            if problem is None and settings.object_storage is not None:
                logger.info("Checking the rejected-records bucket (object_storage_config)")
                problem = check_object_storage(settings.object_storage)
        except ConfigError as error:
            problem = str(error)
        except Exception as error:  # a bug must still answer FAILED, without record data
            problem = f"Unexpected error during check: {type(error).__name__}"
        if problem is not None:
            return AirbyteConnectionStatus(status=Status.FAILED, message=problem)
        return AirbyteConnectionStatus(status=Status.SUCCEEDED)

    @override
    def run(self, args: list[str]) -> None:
        """The CDK's run, except that states are printed as the lines they are (a state is no
        CDK model here, so nothing the platform sent is lost), SIGTERM stops a sync as Ctrl-C
        does, and an expected failure or a signal ends without a stack trace (cli.py).

        `preview` is a local command outside the Airbyte protocol (preview.py)."""
        if args[:1] == ["preview"]:
            raise SystemExit(run_preview(args[1:], sys.stdin.buffer, sys.stdout, sys.stderr))
        with ends_cleanly(logger), stop_on_sigterm():
            if args[:1] == ["discover"]:
                print(self.discover(discover_config_path(args[1:])))
                return
            print_all(self.run_cmd(self.parse_args(args)))

    def discover(self, config_path: str) -> str:
        """The DESTINATION_CATALOG line of `discover --config C`, once the config is known to
        be usable (a config_error otherwise, as for `write`)."""
        try:
            config = read_config_file(config_path)
        except ConfigFileError as error:
            raise config_error(str(error)) from None
        update_secrets(get_secrets(self.spec(logger).connectionSpecification, config))
        parse_config_or_fail(config)
        return destination_catalog_line()

    @override
    def run_cmd(self, parsed_args: argparse.Namespace) -> Iterable[AirbyteMessage]:
        """The CDK's run_cmd, except that this connector reads and validates the config.

        The CDK's own validation would answer first, naming no field and quoting values.
        """
        if parsed_args.command not in ("check", "write"):
            yield from super().run_cmd(parsed_args)
            return
        try:
            config = read_config_file(parsed_args.config)
        except ConfigFileError as error:
            if parsed_args.command == "check":
                yield failed_status(str(error))
                return
            raise config_error(str(error)) from None
        update_secrets(get_secrets(self.spec(logger).connectionSpecification, config))
        if parsed_args.command == "check":
            yield self._run_check(config=config)
        else:
            parse_config_or_fail(config)  # before "Begin writing", as the CDK's validation was
            try:
                catalog = read_catalog_file(parsed_args.catalog)
            except ConfigFileError as error:
                raise config_error(str(error)) from None
            logger.info("Begin writing to the destination...")
            yield from self.write(
                config=config,
                configured_catalog=catalog,
                input_messages=self._parse_input_stream(sys.stdin.buffer),
            )
            logger.info("Writing complete.")

    @override
    def _parse_input_stream(self, input_stream: IO[bytes]) -> Iterable[AirbyteMessage]:  # type: ignore[override]
        return read_messages(stdin_lines(input_stream), self._input_stats, logger)

    @override
    def write(
        self,
        config: Mapping[str, Any],
        configured_catalog: ConfiguredAirbyteCatalog,
        input_messages: Iterable[Message],
    ) -> Iterable[Output]:
        """The CDK's write. States come in as the reader's `StateMessage` (or as CDK models,
        from Python callers) and go out as `EmittedState` lines, exactly as they came but for
        `destinationStats`; everything else is an `AirbyteMessage`."""
        try:
            writer = HeapWriter.start(
                parse_config_or_fail(config), configured_catalog, self._input_stats
            )
        except (ConfigError, CatalogError) as error:
            raise config_error(str(error)) from None
        try:
            yield from writer.run(as_state_messages(input_messages))
        except Exception as error:
            raise as_traced_exception(error) from None


def discover_config_path(args: list[str]) -> str:
    """`discover --config C`: the command the CDK's parser does not know (it exits with
    "invalid choice"), parsed with the same words."""
    parser = argparse.ArgumentParser(prog="discover")
    parser.add_argument("--config", required=True, help="path to the JSON configuration file")
    return parser.parse_args(args).config


def as_state_messages(messages: Iterable[Message]) -> Iterator[Message]:
    """A STATE given as a CDK model (by a Python caller of `write`) becomes a `StateMessage`
    of its JSON, so every state takes the same path; the reader's pass through."""
    for message in messages:
        if message.type == Type.STATE and message.__class__ is AirbyteMessage:
            state = StateMessage.parse(message_line(message))
            if state is not None:
                yield state
        else:
            yield message


def message_line(message: AirbyteMessage) -> str:
    return orjson.dumps(AirbyteMessageSerializer.dump(message)).decode()


def print_all(messages: Iterable[Output]) -> None:
    """Print every message as one line on stdout, states as the lines they are.

    A signal can arrive while a line is being printed, that is while the sync's generator is
    suspended; it is thrown into the generator, so the sync stops the way it stops for a signal
    anywhere else (and prints the states that are ready before it ends)."""
    iterator = iter(messages)
    interrupted: BaseException | None = None
    while True:
        try:
            message = next(iterator) if interrupted is None else iterator.throw(interrupted)
        except StopIteration:
            return
        interrupted = None
        try:
            line = message.line if message.__class__ is EmittedState else message_line(message)
            print(line, flush=message.__class__ is EmittedState)
        except BaseException as error:  # noqa: B036 - a signal must reach the sync's generator
            interrupted = error


DRY_RUN_CHECK = "Dry run: the configuration is valid; no preflight event was sent to Heap."


def parse_config_or_fail(config: Mapping[str, Any]) -> HeapConfig:
    """The config as `write` and `discover` take it: a mapping may come from the catalog
    (data activation), so only `HeapWriter.start` can tell that none is given."""
    try:
        return parse_config(config, require_mapping=False)
    except ConfigError as error:
        raise config_error(str(error)) from None


RESUMES = (
    "States of records not yet delivered were not emitted, so the next sync resumes from the last "
    "emitted state."
)


def as_traced_exception(error: Exception) -> AirbyteTracedException:
    """A TRACE error the user can act on; messages carry no record contents."""
    if isinstance(error, AirbyteTracedException):
        return error
    if isinstance(error, HeapConfigurationError):
        return config_error(f"{error}. Check the '{error.field}' setting; nothing more was sent.")
    if isinstance(error, ObjectStorageError):
        return config_error(f"{error}. {RESUMES}")
    if isinstance(error, HeapRefusesMost):
        return config_error(
            f"{error}. Check the 'api' mapping and 'app_id' (or the stream's entry in "
            f"'streams', or its mapping in Airbyte's mapping screen). {RESUMES}"
        )
    if isinstance(error, RetriesExhausted):
        return traced_error(
            f"Heap stayed unavailable: {error}. {RESUMES}", FailureType.transient_error
        )
    frames = "".join(traceback.format_tb(error.__traceback__))
    return AirbyteTracedException(
        message=f"Unexpected error in destination-heap-analytics: {type(error).__name__}",
        internal_message=f"{type(error).__name__} at\n{frames}",
        failure_type=FailureType.system_error,
    )
