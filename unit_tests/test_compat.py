"""0.3.0's module paths still import (destination_heap_analytics/_compat.py): each old name is the
very module at its new path, so patching one patches the other, and nothing is defined twice."""

from __future__ import annotations

import importlib

import pytest

import destination_heap_analytics
from destination_heap_analytics._compat import MOVED, PACKAGE


@pytest.mark.parametrize("old", sorted(MOVED))
def test_a_0_3_0_module_path_imports_the_module_at_its_new_path(old):
    moved = importlib.import_module(f"{PACKAGE}.{old}")
    assert moved is importlib.import_module(f"{PACKAGE}.{MOVED[old]}")
    assert getattr(destination_heap_analytics, old) is moved


def test_the_0_3_0_config_and_delivery_modules_are_offered_by_their_packages():
    from destination_heap_analytics.config import ConfigError, parse_config
    from destination_heap_analytics.config.settings import parse_config as settings_parse
    from destination_heap_analytics.delivery import BatchDelivery
    from destination_heap_analytics.delivery.batch_delivery import BatchDelivery as moved

    assert parse_config is settings_parse and BatchDelivery is moved
    assert ConfigError.__module__ == "destination_heap_analytics.config.schema"


def test_a_name_that_was_never_a_module_is_still_not_found():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"{PACKAGE}.transform_codegen")
