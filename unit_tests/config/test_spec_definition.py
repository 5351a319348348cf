"""spec.json is exactly what spec_definition.py builds, and Heap's numbers in it come from
heap/limits.py, so a limit or a description is changed in one place and nowhere else."""

from __future__ import annotations

import json

import pytest

from destination_heap_analytics.config import spec_definition
from destination_heap_analytics.config.schema import connection_specification
from destination_heap_analytics.heap import limits as heap_limits


def test_the_committed_spec_json_is_what_the_definition_builds():
    committed = spec_definition.SPEC_PATH.read_text(encoding="utf-8")
    assert committed == spec_definition.spec_json(), (
        "spec.json differs from spec_definition.py: edit the definition, then run "
        "`python -m destination_heap_analytics.config.spec_definition`"
    )


def test_the_spec_read_at_run_time_is_the_built_one():
    assert connection_specification() == spec_definition.build_spec()["connectionSpecification"]


def test_regenerating_writes_the_built_spec(tmp_path, monkeypatch, capsys):
    target = tmp_path / "spec.json"
    monkeypatch.setattr(spec_definition, "SPEC_PATH", target)
    spec_definition.main()
    assert target.read_text(encoding="utf-8") == spec_definition.spec_json()
    assert json.loads(target.read_text(encoding="utf-8")) == spec_definition.build_spec()
    assert str(target) in capsys.readouterr().out


@pytest.fixture
def other_limits(monkeypatch):
    """Heap's limits changed to values that appear nowhere in the spec, so each place that shows
    one must have read it from heap_limits."""
    changed = {
        "MAX_IDENTITY_LENGTH": 77,
        "MAX_EVENT_NAME_LENGTH": 4321,
        "MAX_ITEMS_PER_BULK_REQUEST": 345,
        "TRACK_BULK_LIMIT_PER_APP": (12345, 60.0),
        "TRACK_BULK_LIMIT_PER_IDENTITY": (678, 60.0),
        "MAX_USER_ID": 4_444_444,
        "MAX_USERS_PER_DELETION_REQUEST": 5_555,
        "MAX_USER_IDS_PER_IDENTITY": 66,
        "TRACK_PATH": "/t/track",
        "IDENTIFY_PATH": "/t/identify",
        "USER_DELETION_PATH": "/t/deletion",
        "US_BASE_URL": "https://us.example.test",
        "EU_BASE_URL": "https://eu.example.test",
    }
    for name, value in changed.items():
        monkeypatch.setattr(heap_limits, name, value)
    return spec_definition.build_spec()["connectionSpecification"]["properties"]


def api_options(properties: dict) -> list[dict]:
    top = properties["api"]["oneOf"]
    per_stream = properties["streams"]["items"]["properties"]["api"]["oneOf"]
    return top + per_stream


def test_identity_and_event_name_lengths_follow_heap_limits(other_limits):
    options = api_options(other_limits)
    identities = [
        o["properties"]["identity_column"] for o in options if "identity_column" in o["properties"]
    ]
    assert len(identities) == 8  # track, add_user_properties, identify, delete_users; twice
    for identity in identities:
        assert "(at most 77 characters)" in identity["description"]
    event_names = [
        o["properties"]["event_name"] for o in options if "event_name" in o["properties"]
    ]
    assert len(event_names) == 2
    for event_name in event_names:
        assert "(1 to 4,321 characters)" in event_name["description"]


def test_user_ids_deletions_and_paths_follow_heap_limits(other_limits):
    options = {o["properties"]["api_type"]["const"]: o for o in api_options(other_limits)}
    user_ids = [
        o["properties"]["user_id_column"]
        for o in options.values()
        if "user_id_column" in o["properties"]
    ]
    assert len(user_ids) == 3
    for user_id in user_ids:
        assert "from 0 to 4,444,444" in user_id["description"]
    assert "(POST /t/track)" in options["track"]["description"]
    assert "(POST /t/identify)" in options["identify"]["description"]
    assert "at most 66 user_ids" in options["identify"]["description"]
    assert "up to 5,555" in options["delete_users"]["description"]
    assert "(POST /t/deletion)" in options["delete_users"]["description"]


def test_batch_size_and_pacing_follow_heap_limits(other_limits):
    batch_size = other_limits["batch_size"]
    assert batch_size["maximum"] == batch_size["default"] == 345
    assert batch_size["examples"] == [345, 1]
    assert "(1 to 345)" in batch_size["description"]
    pacing = other_limits["max_events_per_minute"]
    assert "12,345 per minute for bulk track, plus 678 per minute" in pacing["description"]
    assert pacing["examples"] == [12345, 0]


def test_base_url_follows_heap_limits(other_limits):
    base_url = other_limits["base_url"]
    assert base_url["default"] == "https://us.example.test"
    assert base_url["examples"] == ["https://us.example.test", "https://eu.example.test"]
    assert "https://us.example.test for US" in base_url["description"]
    assert "https://eu.example.test for the EU" in base_url["description"]


@pytest.mark.parametrize(
    ("number", "spoken"), [(0, "0"), (16, "16"), (1000, "1,000"), (86400, "86,400")]
)
def test_numbers_are_written_with_thousands_separators(number, spoken):
    assert spec_definition.spoken(number) == spoken
