"""The connector as the Airbyte platform runs it: a real source (airbyte-source-faker) and
generated states go through the platform's replication step (`integration_tests/platform.py`:
ids on states, only RECORD and STATE forwarded), into the real CLI against the sandbox; the
destination's output is judged the way the platform judges it."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from integration_tests.conftest import ROOT, cli_command, record_line, run_write, write_json
from integration_tests.platform import Platform

SOURCE_FAKER = ROOT / ".venv" / "source-faker" / "bin" / "source-faker"
"""Installed by `make test` in a virtualenv of its own: it needs airbyte-cdk 6."""


def catalog(tmp_path: Path, *streams: tuple[str | None, str], name: str = "catalog.json") -> Path:
    def configured(namespace: str | None, stream: str) -> dict:
        described = {
            "name": stream,
            "json_schema": {"type": "object"},
            "supported_sync_modes": ["full_refresh", "incremental"],
        }
        if namespace is not None:
            described["namespace"] = namespace
        return {
            "stream": described,
            "sync_mode": "incremental",
            "destination_sync_mode": "append",
            "cursor_field": ["updated_at"],
        }

    return write_json(tmp_path, name, {"streams": [configured(*s) for s in streams]})


def track_config(base_url: str, **overrides) -> dict:
    return {
        "app_id": "11",
        "base_url": base_url,
        "max_events_per_minute": 0,
        "api": {
            "api_type": "track",
            "identity_column": "user",
            "event_name": "Seen",
            "property_columns": "*",
        },
        **overrides,
    }


def stream_state(stream: str, value: object, namespace: str | None = None) -> str:
    descriptor = {"name": stream} if namespace is None else {"name": stream, "namespace": namespace}
    return json.dumps(
        {
            "type": "STATE",
            "state": {
                "type": "STREAM",
                "stream": {"stream_descriptor": descriptor, "stream_state": {"cursor": value}},
            },
        }
    )


def records(stream: str, count: int, start: int = 0, namespace: str | None = None) -> list[str]:
    found = []
    for n in range(start, start + count):
        line = json.loads(record_line({"user": f"u{n}", "n": n}, stream))
        if namespace is not None:
            line["record"]["namespace"] = namespace
        found.append(json.dumps(line))
    return found


# --- a real source --------------------------------------------------------------------------


def faker_output(tmp_path: Path, count: int) -> tuple[list[str], Path]:
    """airbyte-source-faker's `read` of users, products and purchases, and the configured
    catalog the platform would give the destination for it."""
    if not SOURCE_FAKER.exists():
        pytest.fail("airbyte-source-faker is not installed; run `make test`, which installs it")
    config = write_json(
        tmp_path, "faker.json", {"count": count, "seed": 7, "records_per_slice": 40}
    )
    discovered = subprocess.run(
        [str(SOURCE_FAKER), "discover", "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
    )
    (found,) = [json.loads(x) for x in discovered.stdout.splitlines() if '"CATALOG"' in x]
    streams = found["catalog"]["streams"]
    configured = {
        "streams": [
            {
                "stream": s,
                "sync_mode": "incremental",
                "destination_sync_mode": "append",
                "cursor_field": s.get("default_cursor_field", ["updated_at"]),
            }
            for s in streams
        ]
    }
    catalog_path = write_json(tmp_path, "configured.json", configured)
    read = subprocess.run(
        [str(SOURCE_FAKER), "read", "--config", str(config), "--catalog", str(catalog_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return read.stdout.splitlines(), catalog_path


FAKER_MAPPINGS = {
    "app_id": "11",
    "max_events_per_minute": 0,
    "streams": [
        {
            "stream": "users",
            "api": {
                "api_type": "add_user_properties",
                "identity_column": "email",
                "property_columns": "*",
                "exclude_columns": "address",
            },
        },
        {
            "stream": "products",
            "api": {
                "api_type": "add_account_properties",
                "account_id_column": "id",
                "property_columns": "make, model, year, price",
            },
        },
        {
            "stream": "purchases",
            "api": {
                "api_type": "track",
                "identity_column": "user_id",
                "event_name": "Purchase",
                "timestamp_column": "created_at",
                "property_columns": "product_id, purchased_at, returned_at",
            },
        },
    ],
}


def test_a_real_sources_sync_is_recorded_by_the_platform(sandbox, tmp_path):
    source, configured = faker_output(tmp_path, count=300)
    platform = Platform()
    stdin = platform.forward(source)
    assert len(platform.sent) >= 5 and all('"id":' in x for x in stdin.splitlines() if "STATE" in x)

    run = run_write(tmp_path, {**FAKER_MAPPINGS, "base_url": sandbox.url}, stdin, configured)

    assert run.returncode == 0, run.stderr
    verdict = platform.judge(run.stdout)
    verdict.assert_ok()
    assert verdict.returned == sorted(platform.sent)  # nothing skipped, in order
    forwarded = platform.forwarded_records
    assert len(sandbox.accepted("add_user_properties")) == forwarded[(None, "users")]
    assert len(sandbox.accepted("add_account_properties")) == forwarded[(None, "products")]
    assert len(sandbox.accepted("track")) == forwarded[(None, "purchases")]


# --- generated states -----------------------------------------------------------------------

scalar_texts = st.one_of(
    st.sampled_from(["null", "true", "false", "0", "-0", "1.50", "1e400", "2.0", "-1E-400"]),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr).filter(lambda t: "inf" not in t),
    st.text(max_size=8).map(json.dumps),
    st.text(max_size=8).map(lambda t: json.dumps(t, ensure_ascii=False)),
    st.sampled_from(['"a\\ud83d"', '"\\udc00x"', '"\\u0000"']),
)
json_texts = st.recursive(
    scalar_texts,
    lambda kids: (
        st.lists(kids, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]")
        | st.lists(st.tuples(st.text(max_size=5), kids), max_size=3).map(
            lambda kvs: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in kvs) + "}"
        )
    ),
    max_leaves=12,
)
deep_blobs = st.integers(1, 1500).map(lambda depth: "[" * depth + "1" + "]" * depth)
blobs = json_texts | deep_blobs
extras = st.lists(
    st.tuples(st.sampled_from(["some_future_field", "x_extra"]), json_texts), max_size=2
)


def members(*pairs: tuple[str, str]) -> str:
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}"


@st.composite
def state_texts(draw, stream: str, kind: str) -> str:
    """A state of `kind`, holding anything JSON allows, with fields of later protocols."""
    if kind == "STREAM":
        body = [
            ("type", '"STREAM"'),
            (
                "stream",
                members(
                    ("stream_descriptor", members(("name", json.dumps(stream)))),
                    ("stream_state", draw(blobs)),
                    *draw(extras),
                ),
            ),
        ]
    elif kind == "GLOBAL":
        stream_states = [
            members(
                ("stream_descriptor", members(("name", json.dumps(stream)))),
                ("stream_state", draw(blobs)),
                *draw(extras),
            )
        ]
        body = [
            ("type", '"GLOBAL"'),
            (
                "global",
                members(
                    ("shared_state", draw(blobs)),
                    ("stream_states", "[" + ",".join(stream_states) + "]"),
                ),
            ),
        ]
    else:
        body = [("data", draw(blobs.filter(lambda t: t != "null")))]
    return members(("type", '"STATE"'), ("state", members(*body, *draw(extras))))


@settings(
    max_examples=25,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # each example is a CLI run
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    chunks=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    data=st.data(),
)
def test_generated_states_come_back_exactly_with_their_ids_and_counts(
    sandbox, tmp_path, chunks, data
):
    """One kind per sync, as the platform requires; records between the states."""
    kind = data.draw(st.sampled_from(["STREAM", "GLOBAL", "LEGACY"]))
    states = [data.draw(state_texts("users", kind)) for _ in chunks]
    source, start = [], 0
    for count, state in zip(chunks, states, strict=True):
        source += records("users", count, start)
        source.append(state)
        start += count
    platform = Platform()
    sandbox.reset()

    run = run_write(
        tmp_path,
        track_config(sandbox.url),
        platform.forward(source),
        catalog(tmp_path, (None, "users")),
    )

    assert run.returncode == 0, run.stderr
    verdict = platform.judge(run.stdout)
    verdict.assert_ok()
    assert verdict.returned == sorted(platform.sent)
    assert len(sandbox.accepted("track")) == sum(chunks)


def test_a_state_without_a_namespace_counts_the_records_of_its_stream(sandbox, tmp_path):
    source = records("users", 3, namespace="public") + [stream_state("users", 1)]
    platform = Platform()
    run = run_write(
        tmp_path,
        track_config(sandbox.url),
        platform.forward(source),
        catalog(tmp_path, ("public", "users")),
    )
    assert run.returncode == 0, run.stderr
    verdict = platform.judge(run.stdout)
    assert verdict.counts == {1: (3.0, 0.0)}


def test_rejected_records_are_counted_on_their_state(sandbox, tmp_path):
    sandbox.set_faults(reject_marker="refuse-me")
    good = records("users", 4)
    invalid = record_line({"n": "no user"}, "users")
    refused = record_line({"user": "u9", "note": "refuse-me"}, "users")
    source = [
        *good[:2],
        invalid,
        stream_state("users", 1),
        refused,
        *good[2:],
        stream_state("users", 2),
    ]
    platform = Platform()

    run = run_write(
        tmp_path,
        track_config(sandbox.url),
        platform.forward(source),
        catalog(tmp_path, (None, "users")),
    )

    assert run.returncode == 0, run.stderr
    verdict = platform.judge(run.stdout)
    verdict.assert_ok()
    assert verdict.counts == {1: (2.0, 1.0), 2: (2.0, 1.0)}


# --- a sync that ends early ---------------------------------------------------------------------


def start_write(tmp_path: Path, config: dict, catalog_path: Path) -> subprocess.Popen:
    config_path = write_json(tmp_path, "config.json", config)
    return subprocess.Popen(
        cli_command("write", "--config", str(config_path), "--catalog", str(catalog_path)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def test_sigterm_emits_every_acknowledged_state_and_a_rerun_resumes_from_the_last(
    sandbox, tmp_path
):
    """The first batch is acknowledged, the second hangs in Heap; SIGTERM arrives while the
    source is still sending. State 1 must come back before the connector exits with 143."""
    catalog_path = catalog(tmp_path, (None, "users"))
    sandbox.script("track", {"pass": True}, {"hang": True})
    source = [
        *records("users", 100),
        stream_state("users", 100),
        *records("users", 100, start=100),
        stream_state("users", 200),
    ]
    platform = Platform()
    stdin = platform.forward(source)
    config = track_config(sandbox.url, batch_size=100, max_concurrent_requests=1)
    process = start_write(tmp_path, config, catalog_path)
    process.stdin.write(stdin)
    process.stdin.flush()  # stdin stays open: the source has not finished
    assert sandbox.wait_hanging(1, timeout=30)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 143, stderr
    verdict = platform.judge(stdout, delivered_everything=False)
    verdict.assert_ok()
    assert verdict.returned == [1]
    assert "Terminated (SIGTERM)" in stdout
    assert "Traceback" not in stderr

    # The platform starts the next attempt from state 1: the source sends what follows it.
    sandbox.release()
    rerun_platform = Platform()
    rerun = run_write(
        tmp_path,
        track_config(sandbox.url, batch_size=100),
        rerun_platform.forward(source[101:]),
        catalog_path,
    )
    assert rerun.returncode == 0, rerun.stderr
    rerun_platform.judge(rerun.stdout).assert_ok()
    identities = {item["identity"] for item in sandbox.accepted("track")}
    assert identities == {f"u{n}" for n in range(200)}


def test_a_failing_batch_still_lets_every_acknowledged_state_out(sandbox, tmp_path):
    """Stream `orders` stays unavailable until its retries run out; `users` was delivered."""
    catalog_path = catalog(tmp_path, (None, "users"), (None, "orders"))
    sandbox.script("track", {"pass": True}, {"pass": True}, {"status": 503, "times": 1000})
    source = [
        *records("users", 50),
        stream_state("users", 1),
        *records("users", 50, start=50),
        stream_state("users", 2),
        *records("orders", 50, start=100),
        stream_state("orders", 3),
    ]
    platform = Platform()
    run = run_write(
        tmp_path,
        track_config(sandbox.url, batch_size=50, max_retry_seconds=1, max_concurrent_requests=1),
        platform.forward(source),
        catalog_path,
    )

    assert run.returncode == 1
    (trace,) = run.of_type("TRACE")
    assert trace["trace"]["error"]["failure_type"] == "transient_error"
    verdict = platform.judge(run.stdout, delivered_everything=False)
    verdict.assert_ok()
    assert verdict.returned == [1, 2]
    assert len(sandbox.accepted("track")) == 100


class Output:
    """A running write's stdout, read line by line in a thread, so a test can wait for what
    the connector says while the source is still open (event-gated, never a fixed sleep)."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for_states(self, count: int, timeout: float = 60) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: sum('"STATE"' in line for line in self.lines) >= count, timeout
            )

    def text(self) -> str:
        self._reader.join(timeout=60)
        return "".join(self.lines)


def test_a_quiet_source_still_gets_its_acknowledged_states_back(sandbox, tmp_path):
    """The records are in Heap and the source says nothing more, stdin open: the state must
    come back now, not when the source speaks again; SIGTERM then stops cleanly."""
    process = start_write(tmp_path, track_config(sandbox.url), catalog(tmp_path, (None, "users")))
    output = Output(process)
    platform = Platform()
    process.stdin.write(platform.forward([*records("users", 3), stream_state("users", 3)]))
    process.stdin.flush()
    assert output.wait_for_states(1)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 143
    verdict = platform.judge(output.text(), delivered_everything=False)
    verdict.assert_ok()
    assert verdict.returned == [1] and verdict.counts == {1: (3.0, 0.0)}


@pytest.mark.parametrize("kind", ["STREAM", "GLOBAL"])
def test_a_refused_row_holds_back_checkpoints_only_until_its_refusal_settles(
    sandbox, tmp_path, kind
):
    """One refused row in stream a's 100, then only stream b sends. Stream b's STREAM states
    never wait for a's refusal; a's state (and, for GLOBAL states, every state after it) comes
    back once a thousand more records have been judged after it, with the source still open.
    One request at a time, so that b's records are judged after a's refusal, not beside it."""
    sandbox.set_faults(reject_marker="refuse-me")
    a_records = records("a", 100)
    a_records[40] = record_line({"user": "u40", "note": "refuse-me"}, "a")

    def state(stream: str, value: int) -> str:
        if kind == "STREAM":
            return stream_state(stream, value)
        return json.dumps(
            {"type": "STATE", "state": {"type": "GLOBAL", "global": {"shared_state": {"v": value}}}}
        )

    source = [*a_records, state("a", 1)]
    for n in range(3):
        source += [*records("b", 500, start=1000 + 500 * n), state("b", n + 2)]
    platform = Platform()
    process = start_write(
        tmp_path,
        track_config(sandbox.url, max_concurrent_requests=1),
        catalog(tmp_path, (None, "a"), (None, "b")),
    )
    output = Output(process)
    process.stdin.write(platform.forward(source))
    process.stdin.flush()

    assert output.wait_for_states(4), output.lines  # all four, while the source is still open
    process.stdin.close()
    assert process.wait(timeout=60) == 0
    verdict = platform.judge(output.text())
    verdict.assert_ok()
    assert sorted(verdict.returned) == [1, 2, 3, 4]
    assert verdict.counts[1] == (99.0, 1.0)
    if kind == "GLOBAL":
        assert verdict.returned == [1, 2, 3, 4]
