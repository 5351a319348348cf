"""Read the `--config` (and `--catalog`) file with errors a user can act on.

The CDK's reader ends an unreadable or non-JSON file with a FATAL log, a Python stack trace and a
system_error, and its JSON error can quote the file's text. Here each problem becomes one
sentence naming the file and the problem (with a line and column for a config file that is not
JSON), never the file's contents, so `check` can answer FAILED and `write` a config_error.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from airbyte_cdk.models import ConfiguredAirbyteCatalog, ConfiguredAirbyteCatalogSerializer

from destination_heap_analytics.config.schema import json_kind


class ConfigFileError(ValueError):
    """The config file cannot be used at all; the message never quotes its contents."""


def read_config_file(path: str) -> dict[str, Any]:
    return parse_config_text(_read_bytes(path, "config"), path)


def _read_bytes(path: str, kind: str) -> bytes:
    """The file's bytes, or a ConfigFileError naming the `kind` of file and what went wrong."""
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        raise ConfigFileError(f"The {kind} file {path} does not exist.") from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigFileError(f"The {kind} file {path} could not be read: {reason}.") from None


def parse_config_text(raw: bytes, path: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigFileError(
            f"The config file {path} is not UTF-8 text (byte {error.start + 1})."
        ) from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigFileError(
            f"The config file {path} is not valid JSON: {error.msg} at line {error.lineno}, "
            f"column {error.colno}."
        ) from None
    if not isinstance(config, dict):
        raise ConfigFileError(
            f"The config file {path} must hold a JSON object ({{...}}), not {json_kind(config)}."
        )
    return config


def read_catalog_file(path: str) -> ConfiguredAirbyteCatalog:
    """The `--catalog` file as a configured catalog; a ConfigFileError says what is wrong with
    it (the CDK's own loader ends with a stack trace, or quotes the value it refused)."""
    raw = _read_bytes(path, "catalog")
    try:
        return ConfiguredAirbyteCatalogSerializer.load(orjson.loads(raw))
    except orjson.JSONDecodeError:
        raise ConfigFileError(f"The catalog file {path} is not valid JSON.") from None
    except Exception:  # the models' errors quote the value they refused
        raise ConfigFileError(
            f"The catalog file {path} is not a configured catalog (an object with 'streams')."
        ) from None
