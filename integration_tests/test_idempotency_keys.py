"""The CLI sends release 0.3.0's idempotency keys (issue 16): raw lines of the key fixture
(unit_tests/fixtures/make_idempotency_keys.py) through `python main.py write` to the sandbox,
whose accepted events must carry the keys 0.3.0 gave them.
unit_tests/mapping/test_idempotency_keys.py checks every line in process; this checks a sample
through the real command and HTTP."""

from __future__ import annotations

from collections import Counter

from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer

from integration_tests.conftest import run_write, write_json
from unit_tests.builders import make_catalog
from unit_tests.fixtures.make_idempotency_keys import load_fixture

SAMPLED_RECORDS = 300


def test_the_cli_sends_the_keys_of_release_0_3_0(sandbox, tmp_path):
    fixture = load_fixture()
    first_line_of_record = {keyed.identity: keyed for keyed in reversed(fixture.exact_lines())}
    records = sorted(first_line_of_record.values(), key=lambda keyed: keyed.number)
    sample = records[:: len(records) // SAMPLED_RECORDS]
    catalog = ConfiguredAirbyteCatalogSerializer.dump(make_catalog(*fixture.catalog))
    config = {
        "app_id": "11",
        "base_url": sandbox.url,
        "max_events_per_minute": 0,
        "api": fixture.api,
    }

    run = run_write(
        tmp_path,
        config,
        "".join(f"{keyed.line}\n" for keyed in sample),
        write_json(tmp_path, "catalog.json", catalog),
    )

    assert run.returncode == 0, run.stderr
    accepted = sandbox.accepted("track")
    sent = Counter((event["identity"], event["idempotency_key"]) for event in accepted)
    assert sent == Counter((keyed.identity, keyed.key) for keyed in sample)
