"""Unit tests use fakes only (unit_tests/fakes.py). A test that starts a server belongs in
integration_tests/: this fixture makes that a failure rather than a convention."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture(autouse=True)
def no_servers_in_unit_tests(monkeypatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unit tests use fakes; a test with a server is an integration test")

    monkeypatch.setattr(socket.socket, "listen", refuse)
