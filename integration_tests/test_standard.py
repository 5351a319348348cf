"""Airbyte's standard connector tests (spec and check scenarios of acceptance-test-config.yml).

`check` runs for real: the succeeding scenario's config points at a Heap sandbox started here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from airbyte_cdk.test.standard_tests import DestinationTestSuiteBase

from destination_heap_analytics import DestinationHeapAnalytics
from integration_tests.conftest import ROOT, sample_config
from integration_tests.heap_sandbox import HeapSandbox

pytest_plugins = ["airbyte_cdk.test.standard_tests.pytest_hooks"]

SANDBOX_CONFIG = ROOT / "secrets" / "sandbox_config.json"


@pytest.fixture(autouse=True, scope="module")
def sandbox_config() -> Iterator[HeapSandbox]:
    with HeapSandbox() as server:
        SANDBOX_CONFIG.parent.mkdir(exist_ok=True)
        SANDBOX_CONFIG.write_text(json.dumps(sample_config("track", server.url)))
        yield server


class TestStandardDestination(DestinationTestSuiteBase):
    connector = DestinationHeapAnalytics
