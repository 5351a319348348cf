"""How a command ends when it cannot finish: the messages Airbyte reads, and the exit code.

The CDK leaves every exception to its uncaught-exception hook, which logs it at FATAL with a
Python stack trace before the TRACE message, and prints a raw traceback for Ctrl-C. A failure
this connector expected (a bad config, Heap refusing the app_id, Heap staying unavailable) is
not a bug: the TRACE message says what to fix, and a stack trace would only bury it.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from airbyte_cdk.models import (
    AirbyteConnectionStatus,
    AirbyteMessage,
    FailureType,
    Status,
    Type,
)
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

FAILURE_EXIT_CODE = 1
INTERRUPTED_EXIT_CODE = 130
"""128 + SIGINT, what a shell reports for a command stopped with Ctrl-C."""

TERMINATED_EXIT_CODE = 143
"""128 + SIGTERM, what the Airbyte platform and a shell report for a terminated command."""

INTERRUPTED_MESSAGE = "Interrupted: stopped sending; states emitted so far remain valid."
TERMINATED_MESSAGE = "Terminated (SIGTERM): stopped sending; states emitted so far remain valid."


class Terminated(BaseException):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt, so a sync stops
    the same way: sending stops and the states that are ready go out before it exits."""


EXPECTED_FAILURES = frozenset({FailureType.config_error, FailureType.transient_error})
"""Failures whose TRACE carries no stack trace: the message alone tells the user what to do.
A system_error is a bug, and keeps its stack trace for whoever fixes it."""


def traced_error(message: str, failure_type: FailureType) -> AirbyteTracedException:
    """A TRACE error whose message is all the user needs (and carries no record contents)."""
    return AirbyteTracedException(
        message=message, internal_message=message, failure_type=failure_type
    )


def config_error(message: str) -> AirbyteTracedException:
    return traced_error(message, FailureType.config_error)


def failed_status(message: str) -> AirbyteMessage:
    return AirbyteMessage(
        type=Type.CONNECTION_STATUS,
        connectionStatus=AirbyteConnectionStatus(status=Status.FAILED, message=message),
    )


@contextmanager
def ends_cleanly(logger: logging.Logger) -> Iterator[None]:
    """A traced failure ends with its TRACE message and exit code 1; Ctrl-C with one log line.

    Whatever was sending has already stopped when the exception gets here: the writer's loop
    (`HeapWriter.run`) stops the sending threads on any exception and emits only the states
    whose batches are acknowledged, so no state passes records that were not delivered.
    """
    try:
        yield
    except AirbyteTracedException as error:
        emit_trace(error)
        raise SystemExit(FAILURE_EXIT_CODE) from None
    except KeyboardInterrupt:
        logger.warning(INTERRUPTED_MESSAGE)
        raise SystemExit(INTERRUPTED_EXIT_CODE) from None
    except Terminated:
        logger.warning(TERMINATED_MESSAGE)
        raise SystemExit(TERMINATED_EXIT_CODE) from None


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """While inside, SIGTERM raises `Terminated` in the main thread (once: a second signal
    during the stop is ignored, so the stop can finish); Python's default would end the
    process at once, without the states that are ready."""
    raised = False

    def terminate(signum: int, frame: object) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def emit_trace(error: AirbyteTracedException) -> None:
    if error.failure_type in EXPECTED_FAILURES:
        # A fresh, never raised exception has no traceback for the TRACE's stack_trace field.
        error = AirbyteTracedException(
            message=error.message,
            internal_message=error.internal_message,
            failure_type=error.failure_type,
        )
    error.emit_message()
