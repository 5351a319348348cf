"""`discover`: one DESTINATION_CATALOG message, read back with the protocol's own models."""

from __future__ import annotations

import json

from airbyte_protocol_dataclasses.models import DestinationCatalog, DestinationSyncMode
from serpyco_rs import Serializer

from integration_tests.conftest import run_cli, sample_config, write_json

EXPECTED = {
    ("event", "append"): (
        None,
        {"identity", "user_id", "event", "timestamp", "idempotency_key"},
        ["event"],
        True,
    ),
    ("user", "append_dedup"): ([["identity"]], {"identity"}, ["identity"], True),
    ("user", "update"): ([["user_id"]], {"user_id", "identity"}, ["user_id", "identity"], False),
    ("user", "soft_delete"): ([["identity"], ["user_id"]], {"identity", "user_id"}, None, False),
    ("account", "append_dedup"): ([["account_id"]], {"account_id"}, ["account_id"], True),
}


def test_discover_prints_heaps_objects_and_operations(tmp_path):
    config = write_json(
        tmp_path, "config.json", sample_config("track", "https://heapanalytics.com")
    )
    run = run_cli("discover", "--config", str(config))

    assert run.returncode == 0, run.stderr
    (message,) = run.messages
    assert message["type"] == "DESTINATION_CATALOG"
    catalog = Serializer(DestinationCatalog).load(message["destination_catalog"])
    found = {}
    for operation in catalog.operations:
        assert isinstance(operation.sync_mode, DestinationSyncMode)
        schema = operation.json_schema
        found[(operation.object_name, operation.sync_mode.value)] = (
            operation.matching_keys,
            set(schema["properties"]),
            schema.get("required"),
            schema["additionalProperties"],
        )
    assert found == EXPECTED
    event = next(o for o in catalog.operations if o.object_name == "event")
    assert event.json_schema["properties"]["timestamp"]["format"] == "date-time"


def test_discover_with_a_bad_config_ends_with_a_config_error(tmp_path):
    bad = {**sample_config("track", "https://heapanalytics.com"), "app_id": 11}
    config = write_json(tmp_path, "config.json", bad)
    run = run_cli("discover", "--config", str(config))

    assert run.returncode == 1
    (trace,) = run.of_type("TRACE")
    assert trace["trace"]["error"]["failure_type"] == "config_error"
    assert "'app_id'" in trace["trace"]["error"]["message"]
    assert "Traceback" not in run.stderr
    assert json.dumps(11) not in trace["trace"]["error"]["message"].replace("'app_id'", "")
