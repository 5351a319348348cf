"""The module paths of release 0.3.0, kept importable for one release.

0.4.0 groups the modules by pipeline stage (docs/architecture.md). Code that imported a module
by its 0.3.0 path (`destination_heap_analytics.transformer`) still gets it: the finder below
answers each old name with the module at its new path, the same module object, so nothing is
defined twice. Nothing in the connector imports an old path; unit_tests/test_compat.py checks
every one of them.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

PACKAGE = __name__.rsplit(".", 1)[0]

MOVED = {
    "destination": "airbyte.destination",
    "cli": "airbyte.cli",
    "config_file": "airbyte.config_file",
    "input_reader": "airbyte.input_reader",
    "preview": "airbyte.preview",
    "connection_check": "airbyte.connection_check",
    "config_schema": "config.schema",
    "transformer": "mapping.transformer",
    "column_report": "mapping.column_report",
    "writer": "sync.writer",
    "routes": "sync.routes",
    "state_gate": "sync.state_gate",
    "sync_log": "sync.sync_log",
    "dry_run": "sync.dry_run",
    "loader": "delivery.batcher",
    "senders": "delivery.senders",
    "rejection_guard": "delivery.rejection_guard",
    "pacer": "delivery.pacer",
    "retry": "delivery.retry",
    "client": "heap.client",
    "privacy": "heap.privacy",
    "heap_limits": "heap.limits",
    "stats": "counters",
}
"""0.3.0 module name -> its module now, under the package. `config` and `delivery` are packages now,
whose `__init__` offers what the 0.3.0 modules of those names did; `transform_codegen` is gone."""


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 - the import protocol
        prefix = f"{PACKAGE}."
        if fullname.startswith(prefix) and fullname[len(prefix) :] in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec) -> ModuleType:  # noqa: ANN001
        return importlib.import_module(f"{PACKAGE}.{MOVED[spec.name[len(PACKAGE) + 1 :]]}")

    def exec_module(self, module: ModuleType) -> None:
        pass


def install() -> None:
    if not any(isinstance(finder, _OldPaths) for finder in sys.meta_path):
        sys.meta_path.append(_OldPaths())
