"""One connection, many streams: each stream to its own Heap API in one write, through the real CLI
against the sandbox. States are checked against what the sandbox holds at the moment they are read
from stdout, under concurrency and faults."""

from __future__ import annotations

import json
import random
from collections import Counter

from integration_tests.conftest import (
    SAMPLES,
    lines,
    record_line,
    run_write,
    stream_write,
    write_json,
)

STREAMS_CONFIG = json.loads((SAMPLES / "config-streams.json").read_text())
STREAMS_CATALOG = SAMPLES / "configured_catalog-streams.json"
STREAMS_MESSAGES = (SAMPLES / "messages-streams.jsonl").read_text()
API_OF = {"users": "add_user_properties", "accounts": "add_account_properties", "orders": "track"}


def streams_config(base_url: str, **overrides) -> dict:
    return {**STREAMS_CONFIG, "base_url": base_url, "max_events_per_minute": 0, **overrides}


def sample_records(stream: str) -> list[dict]:
    found = []
    for line in STREAMS_MESSAGES.splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD" and message["record"]["stream"] == stream:
            found.append(message["record"]["data"])
    return found


def stored(items: list[dict]) -> list[dict]:
    return [{k: v for k, v in item.items() if not k.startswith("_")} for item in items]


def test_three_streams_land_in_three_endpoints_in_one_write(sandbox, tmp_path):
    run = run_write(tmp_path, streams_config(sandbox.url), STREAMS_MESSAGES, STREAMS_CATALOG)
    assert run.returncode == 0, run.stderr

    users = stored(sandbox.accepted("add_user_properties"))
    assert sorted(users, key=lambda u: u["identity"]) == [
        {
            "identity": u["email"],
            "properties": {"subscription_plan": u["plan"], "profile.city": u["profile"]["city"]},
        }
        for u in sorted(sample_records("users"), key=lambda u: u["email"])
    ]
    accounts = stored(sandbox.accepted("add_account_properties"))
    assert sorted(a["account_id"] for a in accounts) == ["acct-1", "acct-2", "acct-3", "acct-4"]
    for account in accounts:
        assert set(account["properties"]) == {"id", "name", "plan", "seats", "internal.tier"}
    events = stored(sandbox.accepted("track"))
    assert sorted((e["identity"], e["properties"]["order_total"]) for e in events) == sorted(
        (o["customer"]["email"], o["total"]) for o in sample_records("orders")
    )
    assert {e["event"] for e in events} == {"Order Completed"}
    assert all(set(e["properties"]) == {"order_total", "currency"} for e in events)

    expected_states = [
        json.loads(line)["state"]["stream"]
        for line in STREAMS_MESSAGES.splitlines()
        if '"STATE"' in line
    ]
    assert [s["stream"] for s in run.states] == expected_states
    assert "Total Messages: 25. Total Records: 20. Total loaded: 20." in run.logs
    per_stream = [log for log in run.logs if log.startswith("Stream '")]
    assert per_stream == [
        "Stream 'public.users' (add_user_properties): 8 records, 8 loaded, invalid 0, "
        "rejected 0, 2 requests.",  # the state after 4 users drained their batch
        "Stream 'orders' (track): 8 records, 8 loaded, invalid 0, rejected 0, 2 requests.",
        "Stream 'accounts' (add_account_properties): 4 records, 4 loaded, invalid 0, "
        "rejected 0, 1 requests.",
    ]
    assert not [log for log in run.logs if "not in the stream's schema" in log]


def multi_stream_input(records: int, seed: int) -> tuple[str, list[dict]]:
    """Records of three streams in random order; after some records, a STREAM state (its value:
    the stream's records so far) or a GLOBAL state (every stream's count so far)."""
    rng = random.Random(seed)
    counts = Counter()
    parts, states = [], []
    for _ in range(records):
        stream = rng.choice(["users", "orders", "accounts"])
        counts[stream] += 1
        n = counts[stream]
        data = {
            "users": {"email": f"user-{n % 40}@x.io", "n": n, "plan": "pro"},
            "orders": {"customer": {"email": f"user-{n % 40}@x.io"}, "n": n, "total": n / 10},
            "accounts": {"id": f"acct-{n % 25}", "n": n},
        }[stream]
        parts.append(record_line(data, stream=stream))
        if rng.random() < 0.02:
            if rng.random() < 0.3:
                value = dict(counts)
                parts.append(
                    json.dumps(
                        {
                            "type": "STATE",
                            "state": {
                                "type": "GLOBAL",
                                "global": {"shared_state": value, "stream_states": []},
                            },
                        }
                    )
                )
            else:
                stream = rng.choice(["users", "orders", "accounts"])
                value = {stream: counts[stream]}
                parts.append(
                    json.dumps(
                        {
                            "type": "STATE",
                            "state": {
                                "type": "STREAM",
                                "stream": {
                                    "stream_descriptor": {"name": stream},
                                    "stream_state": value,
                                },
                            },
                        }
                    )
                )
            states.append(value)
    return lines(*parts), states


def accepted_ns(sandbox, stream: str) -> set[int]:
    return {item["properties"]["n"] for item in sandbox.accepted(API_OF[stream])}


def test_stream_and_global_states_are_never_early_under_concurrency_and_faults(sandbox, tmp_path):
    sandbox.set_faults(
        latency_ms=15, error_500_rate=0.1, error_429_rate=0.05, retry_after=0, seed=3
    )
    mappings = [
        {
            "stream": "users",
            "api": {
                "api_type": "add_user_properties",
                "identity_column": "email",
                "property_columns": "n, plan",
            },
        },
        {
            "stream": "orders",
            "api": {
                "api_type": "track",
                "identity_column": "customer.email",
                "event_name": "Order",
                "property_columns": "n, total",
            },
        },
        {
            "stream": "accounts",
            "api": {
                "api_type": "add_account_properties",
                "account_id_column": "id",
                "property_columns": "n",
            },
        },
    ]
    config = streams_config(sandbox.url, streams=mappings, batch_size=40, max_concurrent_requests=8)
    messages, expected_states = multi_stream_input(2400, seed=5)
    config_path = write_json(tmp_path, "c.json", config)
    seen = []
    for message in stream_write(config_path, STREAMS_CATALOG, messages):
        if message["type"] != "STATE":
            continue
        state = message["state"]
        value = (
            state["global"]["shared_state"]
            if state["type"] == "GLOBAL"
            else (state["stream"]["stream_state"])
        )
        for stream, covered in value.items():
            missing = set(range(1, covered + 1)) - accepted_ns(sandbox, stream)
            assert not missing, f"a state covering {stream} {covered} came early"
        seen.append(value)
    assert seen == expected_states, "every state, in input order"
    assert sandbox.counters()["injected_500"] > 0
    for stream, api_type in API_OF.items():
        ns = [item["properties"]["n"] for item in sandbox.accepted(api_type)]
        total = sum(1 for line in messages.splitlines() if f'"stream": "{stream}"' in line)
        assert set(ns) == set(range(1, total + 1)), f"nothing of {stream} lost"


def test_a_stream_without_a_mapping_is_ignored_with_one_warning(sandbox, tmp_path):
    only_orders = [entry for entry in STREAMS_CONFIG["streams"] if entry["stream"] == "orders"]
    run = run_write(
        tmp_path,
        streams_config(sandbox.url, streams=only_orders),
        STREAMS_MESSAGES,
        STREAMS_CATALOG,
    )
    assert run.returncode == 0, run.stderr
    assert len(sandbox.accepted("track")) == 8
    assert sandbox.accepted("add_user_properties") == []
    warnings = [log for log in run.logs if "has no mapping" in log]
    assert sorted(warnings) == [
        "Stream 'accounts' has no mapping: it is not listed in 'streams' and there is no "
        "top-level 'api'. Its records are ignored and counted in the summary.",
        "Stream 'users' has no mapping: it is not listed in 'streams' and there is no "
        "top-level 'api'. Its records are ignored and counted in the summary.",
    ]
    (summary,) = [log for log in run.logs if log.startswith("Sync summary")]
    assert "ignored (stream without a mapping): 12 (users: 8, accounts: 4)" in summary
    assert len(run.states) == 5, "states of ignored streams still go back"


def test_a_default_mapping_serves_every_stream_not_listed(sandbox, tmp_path):
    users_only = [entry for entry in STREAMS_CONFIG["streams"] if entry["stream"] == "users"]
    default = {
        "api_type": "track",
        "identity_column": "customer.email",
        "event_name": "Other",
        "property_columns": "id",
    }
    run = run_write(
        tmp_path,
        streams_config(sandbox.url, streams=users_only, api=default),
        STREAMS_MESSAGES,
        STREAMS_CATALOG,
    )
    assert run.returncode == 0, run.stderr
    assert len(sandbox.accepted("add_user_properties")) == 8
    assert len(sandbox.accepted("track")) == 8  # orders; accounts have no customer.email
    (summary,) = [log for log in run.logs if log.startswith("Sync summary")]
    assert "invalid records skipped: 4 (customer.email is missing or null: 4)" in summary


def test_mapped_columns_missing_from_the_catalog_schema_are_warned_about_at_start(
    sandbox, tmp_path
):
    streams = json.loads(json.dumps(STREAMS_CONFIG["streams"]))
    streams[2]["api"]["property_columns"] = "totl as order_total, currency"
    run = run_write(
        tmp_path, streams_config(sandbox.url, streams=streams), STREAMS_MESSAGES, STREAMS_CATALOG
    )
    assert run.returncode == 0, run.stderr
    warning = (
        "Stream 'orders': column 'totl' is not in the stream's schema in the configured "
        "catalog. Did you mean 'total'?"
    )
    assert run.logs.count(warning) == 1
    assert run.logs.index(warning) < run.logs.index(
        next(log for log in run.logs if log.startswith("Stream 'orders' (track)"))
    )


def namespaced_catalog(tmp_path, *streams: tuple[str, str]):
    return write_json(
        tmp_path,
        "namespaced_catalog.json",
        {
            "streams": [
                {
                    "stream": {
                        "name": name,
                        "namespace": namespace,
                        "json_schema": {"type": "object"},
                        "supported_sync_modes": ["full_refresh"],
                    },
                    "sync_mode": "full_refresh",
                    "destination_sync_mode": "append",
                }
                for namespace, name in streams
            ]
        },
    )


def namespaced_record(namespace: str, data: dict) -> str:
    message = json.loads(record_line(data, "users"))
    message["record"]["namespace"] = namespace
    return json.dumps(message)


PUB_USERS = {
    "stream": "users",
    "namespace": "pub",
    "api": {
        "api_type": "add_user_properties",
        "identity_column": "email",
        "property_columns": "plan",
    },
}


def test_a_namespaced_entry_never_loads_another_namespaces_stream(sandbox, tmp_path):
    """Issue 14.1: pub.users goes to user properties; stg.users, its namesake in another
    namespace, takes the top-level track mapping and never pub's."""
    catalog = namespaced_catalog(tmp_path, ("pub", "users"), ("stg", "users"))
    config = {
        "app_id": "11",
        "base_url": sandbox.url,
        "max_events_per_minute": 0,
        "streams": [PUB_USERS],
        "api": {
            "api_type": "track",
            "identity_column": "email",
            "event_name": "Staged",
            "property_columns": "plan",
        },
    }
    messages = lines(
        namespaced_record("pub", {"email": "prod@x.io", "plan": "pro"}),
        namespaced_record("stg", {"email": "staging@x.io", "plan": "test"}),
    )
    run = run_write(tmp_path, config, messages, catalog)

    assert run.returncode == 0, run.stderr
    assert [u["identity"] for u in sandbox.accepted("add_user_properties")] == ["prod@x.io"]
    assert [e["identity"] for e in sandbox.accepted("track")] == ["staging@x.io"]


def test_without_a_top_level_api_another_namespaces_stream_is_ignored_and_counted(
    sandbox, tmp_path
):
    catalog = namespaced_catalog(tmp_path, ("pub", "users"), ("stg", "users"))
    config = {
        "app_id": "11",
        "base_url": sandbox.url,
        "max_events_per_minute": 0,
        "streams": [PUB_USERS],
    }
    messages = lines(
        namespaced_record("pub", {"email": "prod@x.io", "plan": "pro"}),
        namespaced_record("stg", {"email": "staging@x.io", "plan": "test"}),
        namespaced_record("stg", {"email": "staging2@x.io", "plan": "test"}),
    )
    run = run_write(tmp_path, config, messages, catalog)

    assert run.returncode == 0, run.stderr
    assert [u["identity"] for u in sandbox.accepted("add_user_properties")] == ["prod@x.io"]
    assert sandbox.accepted("track") == []
    (summary,) = [log for log in run.logs if log.startswith("Sync summary")]
    assert "ignored (stream without a mapping): 2 (users: 2)" in summary
