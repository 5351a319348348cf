"""Shared fixtures: unit tests that cross the HTTP path use the local Heap sandbox (real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integration_tests.heap_sandbox import HeapSandbox


@pytest.fixture
def sandbox() -> Iterator[HeapSandbox]:
    with HeapSandbox() as server:
        yield server
