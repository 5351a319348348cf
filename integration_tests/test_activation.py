"""Data activation through the real CLI against the sandbox: catalogs shaped as the platform
sends them after its mappers (every stream names a Heap object and sync mode, records already
renamed to the operation's fields), judged by the platform harness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from integration_tests.conftest import run_cli, run_write, sample_config, write_json
from integration_tests.platform import Platform, validate_catalog

APP = {"app_id": "11", "max_events_per_minute": 0}
"""A data-activation destination's whole config: no `api`, no `streams`."""


def discovered(tmp_path: Path) -> dict:
    config = write_json(tmp_path, "discover.json", {**APP, "base_url": "https://heapanalytics.com"})
    (message,) = run_cli("discover", "--config", str(config)).messages
    return message["destination_catalog"]


def activated(
    name: str, object_name: str, sync_mode: str, fields: list[str], key: list[str] | None
) -> dict:
    """A configured stream as the platform writes it for an activation connection."""
    stream = {
        "stream": {
            "name": name,
            "json_schema": {
                "type": "object",
                "properties": {field: {"type": ["null", "string"]} for field in fields},
                "additionalProperties": True,
            },
            "supported_sync_modes": ["full_refresh", "incremental"],
        },
        "sync_mode": "incremental",
        "destination_sync_mode": sync_mode,
        "destination_object_name": object_name,
        "cursor_field": ["updated_at"],
        "sync_id": 77,
        "generation_id": 0,
        "minimum_generation_id": 0,
    }
    if key is not None:
        stream["primary_key"] = [[field] for field in key]
    return stream


EVENTS = activated(
    "orders", "event", "append", ["identity", "event", "timestamp", "total", "currency"], None
)
USERS = activated(
    "crm_contacts", "user", "append_dedup", ["identity", "plan", "city"], ["identity"]
)
ACCOUNTS = activated(
    "crm_companies", "account", "append_dedup", ["account_id", "tier"], ["account_id"]
)


def record(stream: str, data: dict) -> str:
    return json.dumps(
        {"type": "RECORD", "record": {"stream": stream, "data": data, "emitted_at": 1}}
    )


def state(stream: str, value: int) -> str:
    return json.dumps(
        {
            "type": "STATE",
            "state": {
                "type": "STREAM",
                "stream": {"stream_descriptor": {"name": stream}, "stream_state": {"v": value}},
            },
        }
    )


def test_the_harness_accepts_these_catalogs_as_the_platform_would(tmp_path):
    catalog = {"streams": [EVENTS, USERS, ACCOUNTS]}
    assert validate_catalog(catalog, discovered(tmp_path)) == []


def test_one_sync_loads_events_users_and_accounts_mapped_in_the_mapping_screen(sandbox, tmp_path):
    catalog_path = write_json(tmp_path, "catalog.json", {"streams": [EVENTS, USERS, ACCOUNTS]})
    source = [
        record(
            "orders",
            {
                "identity": "ann@x.io",
                "event": "Order",
                "timestamp": "2026-01-02T03:04:05Z",
                "total": 12.5,
                "currency": "EUR",
            },
        ),
        record("crm_contacts", {"identity": "ann@x.io", "plan": "pro", "city": "Oslo"}),
        state("orders", 1),
        record("crm_companies", {"account_id": "acme", "tier": "gold"}),
        state("crm_contacts", 2),
        state("crm_companies", 3),
    ]
    platform = Platform()

    run = run_write(
        tmp_path, {**APP, "base_url": sandbox.url}, platform.forward(source), catalog_path
    )

    assert run.returncode == 0, run.stderr
    verdict = platform.judge(run.stdout)
    verdict.assert_ok()
    assert sorted(verdict.returned) == [1, 2, 3]
    (event,) = sandbox.accepted("track")
    assert (event["identity"], event["event"], event["timestamp"]) == (
        "ann@x.io",
        "Order",
        "2026-01-02T03:04:05Z",
    )
    assert event["properties"] == {"total": 12.5, "currency": "EUR"}
    (user,) = sandbox.accepted("add_user_properties")
    assert user["identity"] == "ann@x.io" and user["properties"] == {"plan": "pro", "city": "Oslo"}
    (account,) = sandbox.accepted("add_account_properties")
    assert account["account_id"] == "acme" and account["properties"] == {"tier": "gold"}


@pytest.mark.parametrize(
    "stream, words",
    [
        (
            {**EVENTS, "destination_object_name": "company"},
            "names the destination object 'company'; Heap offers event, user, account",
        ),
        (
            {**ACCOUNTS, "destination_sync_mode": "update"},
            "the sync mode 'update'; that object offers append_dedup",
        ),
        ({**USERS, "primary_key": [["plan"]]}, "its primary key; it must be [identity]"),
    ],
)
def test_a_catalog_the_platform_would_refuse_ends_write_at_its_start(
    sandbox, tmp_path, stream, words
):
    assert validate_catalog({"streams": [stream]}, discovered(tmp_path)) != []
    catalog_path = write_json(tmp_path, "bad.json", {"streams": [stream]})

    run = run_write(
        tmp_path,
        {**APP, "base_url": sandbox.url},
        record(stream["stream"]["name"], {"identity": "x"}) + "\n",
        catalog_path,
    )

    assert run.returncode == 1
    (trace,) = run.of_type("TRACE")
    error = trace["trace"]["error"]
    assert error["failure_type"] == "config_error"
    assert error["message"].startswith("The configured catalog cannot be loaded: stream ")
    assert words in error["message"]
    assert sandbox.counters()["requests"] == 0


def test_a_config_mapping_for_an_activated_stream_is_a_config_error(sandbox, tmp_path):
    config = {
        **sample_config("add_user_properties", sandbox.url),
        "streams": [
            {
                "stream": "crm_contacts",
                "api": {
                    "api_type": "add_user_properties",
                    "identity_column": "email",
                    "property_columns": "*",
                },
            }
        ],
    }
    catalog_path = write_json(tmp_path, "catalog.json", {"streams": [USERS]})
    run = run_write(
        tmp_path, config, record("crm_contacts", {"identity": "x"}) + "\n", catalog_path
    )
    assert run.returncode == 1
    (trace,) = run.of_type("TRACE")
    assert "'streams[0].stream'" in trace["trace"]["error"]["message"]


def test_check_and_discover_accept_a_config_without_mappings(sandbox, tmp_path):
    config = write_json(tmp_path, "config.json", {**APP, "base_url": sandbox.url})
    assert run_cli("check", "--config", str(config)).connection_status["status"] == "SUCCEEDED"
    assert run_cli("discover", "--config", str(config)).returncode == 0


def test_without_any_mapping_write_still_ends_naming_api(sandbox, tmp_path):
    catalog = {"streams": [{k: v for k, v in EVENTS.items() if k != "destination_object_name"}]}
    run = run_write(
        tmp_path,
        {**APP, "base_url": sandbox.url},
        record("orders", {"identity": "x"}) + "\n",
        write_json(tmp_path, "plain.json", catalog),
    )
    assert run.returncode == 1
    (trace,) = run.of_type("TRACE")
    assert (
        "Invalid configuration field 'api': is required unless 'streams'"
        in trace["trace"]["error"]["message"]
    )


IDENTIFIED = activated("sdk_links", "user", "update", ["user_id", "identity"], ["user_id"])
ERASED_BY_IDENTITY = activated("erasures", "user", "soft_delete", ["identity"], ["identity"])
ERASED_BY_USER_ID = activated(
    "sdk_erasures", "user", "soft_delete", ["identity", "user_id"], ["user_id"]
)
EVENTS_BY_USER_ID = activated("sdk_events", "event", "append", ["user_id", "event", "plan"], None)
API_KEY = "main-production-key"


def test_the_harness_accepts_the_user_operations_as_the_platform_would(tmp_path):
    catalog = {"streams": [IDENTIFIED, ERASED_BY_IDENTITY, ERASED_BY_USER_ID, EVENTS_BY_USER_ID]}
    assert validate_catalog(catalog, discovered(tmp_path)) == []


def test_identify_soft_delete_and_events_by_user_id_from_the_mapping_screen(sandbox, tmp_path):
    sandbox.set_auth(api_keys={"11": [API_KEY]})
    streams = [IDENTIFIED, ERASED_BY_IDENTITY, ERASED_BY_USER_ID, EVENTS_BY_USER_ID]
    catalog_path = write_json(tmp_path, "catalog.json", {"streams": streams})
    source = [
        record("sdk_links", {"user_id": "77", "identity": "ann@x.io"}),
        record("sdk_links", {"user_id": 77, "identity": "bob@x.io"}),  # Heap would ignore it
        state("sdk_links", 1),
        record("erasures", {"identity": "gone@x.io"}),
        state("erasures", 2),
        record("sdk_erasures", {"identity": "not-the-key@x.io", "user_id": "78"}),
        state("sdk_erasures", 3),
        record("sdk_events", {"user_id": 79.0, "event": "Seen", "plan": "pro"}),
        state("sdk_events", 4),
    ]
    platform = Platform()

    run = run_write(
        tmp_path,
        {**APP, "base_url": sandbox.url, "api_key": API_KEY},
        platform.forward(source),
        catalog_path,
    )

    assert run.returncode == 0, run.stderr
    verdict = platform.judge(run.stdout)
    verdict.assert_ok()
    assert sorted(verdict.returned) == [1, 2, 3, 4]
    assert verdict.counts[1] == (1.0, 1.0)
    assert [(c["identity"], c["user_id"]) for c in sandbox.identify_calls()] == [("ann@x.io", "77")]
    users = sorted((r["users"] for r in sandbox.deletion_requests()), key=str)
    assert users == sorted([[{"identity": "gone@x.io"}], [{"user_id": 78}]], key=str)
    (event,) = sandbox.accepted("track")
    assert (event["user_id"], event["event"]) == ("79", "Seen")
    assert event["properties"] == {"plan": "pro"}
    assert "identity" not in event


def test_a_soft_delete_without_api_key_ends_write_naming_it(sandbox, tmp_path):
    catalog_path = write_json(tmp_path, "catalog.json", {"streams": [ERASED_BY_IDENTITY]})
    run = run_write(
        tmp_path,
        {**APP, "base_url": sandbox.url},
        record("erasures", {"identity": "gone@x.io"}) + "\n",
        catalog_path,
    )
    assert run.returncode == 1
    (trace,) = run.of_type("TRACE")
    assert trace["trace"]["error"]["message"].startswith("Invalid configuration field 'api_key'")
    assert sandbox.requests_log() == []


def test_events_that_map_both_identity_and_user_id_end_write_at_its_start(sandbox, tmp_path):
    both = activated("sdk_events", "event", "append", ["identity", "user_id", "event"], None)
    run = run_write(
        tmp_path,
        {**APP, "base_url": sandbox.url},
        record("sdk_events", {"identity": "a", "user_id": "1", "event": "e"}) + "\n",
        write_json(tmp_path, "catalog.json", {"streams": [both]}),
    )
    assert run.returncode == 1
    (trace,) = run.of_type("TRACE")
    assert "maps both 'identity' and 'user_id'" in trace["trace"]["error"]["message"]
    assert sandbox.requests_log() == []
