"""Idempotency keys stay byte-identical to release 0.3.0's, for every record (issue 16).

Heap stores a track event once per key, so a release that computes one key differently sends
that record again as a new event on the first rerun after the upgrade. The fixture
(`fixtures/idempotency_keys.jsonl`, made by `fixtures/make_idempotency_keys.py`, whose
docstring says what it varies) holds a few thousand raw stdin lines and the key 0.3.0's own code
gave each. Here the lines go the way a sync sends them: the current reader, the writer with its
routes, transform, batching and senders, and the real client's request body, with only the HTTP
post replaced; every key Heap would receive must be the stored one.
"""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest

from destination_heap_analytics.airbyte.input_reader import read_messages
from destination_heap_analytics.counters import InputStats
from destination_heap_analytics.heap.client import HeapClient
from destination_heap_analytics.sync.writer import HeapWriter
from unit_tests.builders import heap_config, make_catalog
from unit_tests.fakes import FakeClock
from unit_tests.fixtures.make_idempotency_keys import KeyedLine, KeyFixture, load_fixture


class PostedItems:
    """A client factory for the writer: real `HeapClient`s whose `post` keeps the items of each
    request body instead of sending it."""

    def __init__(self) -> None:
        self.items: list[dict] = []

    def __call__(self, endpoint_url: str, app_id: str, bulk_key: str | None, **_) -> HeapClient:
        posted = self.items

        class Capturing(HeapClient):
            def post(self, body: bytes, url: str | None = None) -> None:
                sent = json.loads(body)
                posted.extend(sent[self.bulk_key] if self.bulk_key else [sent])

        return Capturing(endpoint_url, app_id, bulk_key)


def sync(fixture: KeyFixture, keyed_lines: list[KeyedLine]) -> tuple[list[dict], InputStats]:
    """The items one sync of these raw lines posts (in any order), and what its reader counted."""
    heap = PostedItems()
    input_stats = InputStats()
    writer = HeapWriter.start(
        heap_config(api=fixture.api),
        make_catalog(*fixture.catalog),
        input_stats,
        FakeClock(),
        client_factory=heap,
    )
    raw = (f"{keyed.line}\n".encode() for keyed in keyed_lines)
    for _ in writer.run(read_messages(raw, input_stats, logging.getLogger("keys"))):
        pass
    return heap.items, input_stats


def assert_keys_of_release(fixture: KeyFixture, keyed_lines: list[KeyedLine]) -> None:
    """Every line's (identity, key) was posted, as often as the lines hold it. The identities
    are one per record of the fixture, so a key that moved to another line is caught too."""
    items, input_stats = sync(fixture, keyed_lines)
    posted = Counter((item["identity"], item["idempotency_key"]) for item in items)
    changed = [keyed.number for keyed in keyed_lines if posted[(keyed.identity, keyed.key)] == 0]
    assert not changed, (
        f"{len(changed)} of {len(keyed_lines)} lines were not sent with 0.3.0's key "
        f"(lines skipped by the reader: {dict(input_stats.skipped_lines)}); "
        f"fixture lines {changed[:20]}"
    )
    assert posted == Counter((keyed.identity, keyed.key) for keyed in keyed_lines)


@pytest.fixture(scope="module")
def fixture() -> KeyFixture:
    return load_fixture()


def test_the_fixture_holds_thousands_of_lines_and_one_key_per_record(fixture):
    """The premise of the comparison by (identity, key): the lines of one record share its
    identity and its key, and no other record has either."""
    assert len(fixture.exact_lines()) > 2000
    assert len(fixture.renamespaced_lines()) > 20
    identities = {keyed.identity for keyed in fixture.lines}
    assert len(identities) > 1500
    assert len({keyed.key for keyed in fixture.lines}) == len(identities)
    assert len({(keyed.identity, keyed.key) for keyed in fixture.lines}) == len(identities)


def test_keys_are_those_of_release_0_3_0(fixture):
    assert_keys_of_release(fixture, fixture.exact_lines())


def test_keys_of_records_under_a_rewritten_namespace_are_those_of_release_0_3_0(fixture):
    assert_keys_of_release(fixture, fixture.renamespaced_lines())
