"""The layering `make lint` checks (import-linter, `[tool.importlinter]` in pyproject.toml) covers
every module: a module outside every layer would be free to import anything, unchecked."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import destination_heap_analytics

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE_THE_LAYERS = {"_version", "_compat"}
"""The version (imported by setup.py before anything is installed) and the finder of 0.3.0's
paths, which imports nothing of the connector by name."""


def layers() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = config["contracts"]
    assert contract["type"] == "layers"
    return [[name.strip() for name in layer.split("|")] for layer in contract["layers"]]


def test_every_module_of_the_package_is_in_a_layer():
    package = destination_heap_analytics.__name__
    layered = {name for layer in layers() for name in layer}
    for module in pkgutil.iter_modules(destination_heap_analytics.__path__):
        if module.name in OUTSIDE_THE_LAYERS:
            continue
        assert f"{package}.{module.name}" in layered, f"{module.name} is in no layer"
