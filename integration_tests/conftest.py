"""Fixtures for running the real CLI (`python main.py …`) against the local Heap sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from integration_tests.heap_sandbox import HeapSandbox
from integration_tests.s3_server import S3Server

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_files"
CATALOG = SAMPLES / "configured_catalog.json"
SAMPLE_CONFIGS = {
    "track": "config-events.json",
    "add_user_properties": "config-aup.json",
    "add_account_properties": "config-aap.json",
}


@pytest.fixture
def sandbox() -> Iterator[HeapSandbox]:
    with HeapSandbox() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 on 127.0.0.1 (its own process), shared by the session; tests use own buckets."""
    with S3Server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket on `s3_server`."""
    name = f"rejected-{uuid.uuid4().hex[:16]}"
    s3_server.create_bucket(name)
    return name


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def messages(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.split("\n") if line.startswith("{")]

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def connection_status(self) -> dict:
        """The one CONNECTION_STATUS of a `check`."""
        (status,) = self.of_type("CONNECTION_STATUS")
        return status["connectionStatus"]

    @property
    def logs(self) -> list[str]:
        return [m["log"]["message"] for m in self.of_type("LOG")]

    @property
    def states(self) -> list[dict]:
        return [m["state"] for m in self.of_type("STATE")]


def sample_config(api_type: str, base_url: str, **overrides) -> dict:
    config = json.loads((SAMPLES / SAMPLE_CONFIGS[api_type]).read_text())
    return {**config, "base_url": base_url, **overrides}


def write_json(tmp_path: Path, name: str, payload: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(payload))
    return path


def cli_command(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), *args]


def run_cli(*args: str, stdin: str | bytes = "", timeout: float = 120) -> CliRun:
    """`stdin` as text, or as raw bytes for input that is not valid UTF-8."""
    raw = stdin if isinstance(stdin, bytes) else stdin.encode("utf-8", "surrogatepass")
    done = subprocess.run(
        cli_command(*args), input=raw, capture_output=True, cwd=ROOT, timeout=timeout
    )
    return CliRun(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


def run_write(
    tmp_path: Path,
    config: dict,
    messages: str | bytes,
    catalog: Path = CATALOG,
    timeout: float = 120,
) -> CliRun:
    config_path = write_json(tmp_path, "config.json", config)
    return run_cli(
        "write",
        "--config",
        str(config_path),
        "--catalog",
        str(catalog),
        stdin=messages,
        timeout=timeout,
    )


def stream_write(config_path: Path, catalog: Path, messages: str) -> Iterator[dict]:
    """`python main.py write` fed `messages` from a thread: yields each message of its stdout as
    it arrives (so a test can compare a state with what the sandbox holds at that moment), then
    checks that the command succeeded."""
    process = subprocess.Popen(
        cli_command("write", "--config", str(config_path), "--catalog", str(catalog)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    feeder = threading.Thread(target=lambda: (process.stdin.write(messages), process.stdin.close()))
    feeder.start()
    for line in process.stdout:
        yield json.loads(line)
    feeder.join()
    assert process.wait(timeout=120) == 0


def record_line(data: dict, stream: str = "users") -> str:
    return json.dumps(
        {"type": "RECORD", "record": {"stream": stream, "data": data, "emitted_at": 1}}
    )


def state_line(value: object, stream: str = "users") -> str:
    return json.dumps(
        {
            "type": "STATE",
            "state": {
                "type": "STREAM",
                "stream": {"stream_descriptor": {"name": stream}, "stream_state": {"v": value}},
            },
        }
    )


def lines(*parts: str) -> str:
    return "\n".join(parts) + "\n"
