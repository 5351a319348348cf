"""The built wheel, installed into a fresh virtualenv, works the way the Docker image runs it.

No Docker engine is available here, so this test does what the Dockerfile's builder stage does:
it copies exactly the files the Dockerfile COPYs, builds the wheel from them with pip, installs
it into a new virtualenv outside the checkout (its dependencies resolved from the package index),
and runs `spec`, `check` and `write` through the installed console script
`destination-heap-analytics`, from a working directory outside the checkout, against the Heap
sandbox. A file that setup.py needs but the Dockerfile does not copy fails the build here.

The virtualenv is made and filled by uv, as PyAirbyte does when it installs a connector. pip
would take about two minutes here: the package index's responses carry no caching headers, so
pip's HTTP cache stores nothing and every run downloads all 80-odd dependencies again, one after
the other. uv keeps the wheels it downloaded and fetches in parallel: 4 to 7 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import pytest
from uv import find_uv_bin

from destination_heap_analytics._version import __version__
from integration_tests.conftest import ROOT, SAMPLES, CliRun, sample_config, write_json

pytestmark = pytest.mark.package

DISTRIBUTION = "airbyte-destination-heap-analytics"
CONSOLE_SCRIPT = "destination-heap-analytics"
INSTALL_TIMEOUT_SECONDS = 600
CLI_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class InstalledConnector:
    venv_dir: Path
    wheel: Path
    workdir: Path

    @property
    def python(self) -> Path:
        return self.venv_dir / "bin" / "python"

    @property
    def console_script(self) -> Path:
        return self.venv_dir / "bin" / CONSOLE_SCRIPT


def builder_stage_copies(dockerfile: str) -> list[tuple[list[str], str]]:
    """The (sources, destination) of each COPY from the build context in the builder stage."""
    copies: list[tuple[list[str], str]] = []
    in_builder = False
    for line in dockerfile.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "FROM":
            in_builder = words[-2:] == ["AS", "builder"]
        elif in_builder and words[0] == "COPY":
            args = [word for word in words[1:] if not word.startswith("--")]
            assert len(args) == len(words) - 1, "a COPY --from in the builder stage is unexpected"
            copies.append((args[:-1], args[-1]))
    assert copies, "the Dockerfile has no builder stage that copies the source"
    return copies


def docker_build_context(target: Path) -> Path:
    """Copy into `target` what the Dockerfile's builder stage copies, as Docker would."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for sources, destination in builder_stage_copies((ROOT / "Dockerfile").read_text()):
        into = target / destination
        for source in sources:
            path = ROOT / source
            if path.is_dir():  # Docker copies a directory's contents into the destination
                shutil.copytree(path, into, ignore=skip, dirs_exist_ok=True)
            elif destination.endswith("/"):
                into.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, into / path.name)
            else:
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, into)
    return target


def clean_environment() -> dict[str, str]:
    """The caller's environment without anything that could make Python find the checkout.

    PYTHONDONTWRITEBYTECODE goes too, as in the image: the first run then caches the modules it
    imports in the fresh venv, instead of every run compiling the CDK anew (uv installs no .pyc).
    """
    hidden = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE"}
    return {name: value for name, value in os.environ.items() if name not in hidden}


def run_checked(command: list[str | Path], cwd: Path, timeout: float) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (
        f"{command[:4]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def is_inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> InstalledConnector:
    """Build the wheel from the Docker build context and install it into a fresh virtualenv."""
    base = tmp_path_factory.mktemp("package")
    assert not is_inside(base, ROOT), "the virtualenv must live outside the checkout"
    context = docker_build_context(base / "context")
    wheels = base / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check"]
    run_checked(
        [*pip_wheel, "--no-deps", "--wheel-dir", wheels, context], base, INSTALL_TIMEOUT_SECONDS
    )
    (wheel,) = wheels.glob("*.whl")
    venv_dir = base / "venv"
    uv = find_uv_bin()
    run_checked(
        [uv, "venv", "--quiet", "--python", sys.executable, venv_dir], base, INSTALL_TIMEOUT_SECONDS
    )
    python = venv_dir / "bin" / "python"
    run_checked(
        [uv, "pip", "install", "--quiet", "--python", python, wheel],
        base,
        INSTALL_TIMEOUT_SECONDS,
    )
    workdir = base / "workdir"
    workdir.mkdir()
    return InstalledConnector(venv_dir=venv_dir, wheel=wheel, workdir=workdir)


def run_installed_cli(installed: InstalledConnector, *args: str, stdin: str = "") -> CliRun:
    """Run the installed console script the way the image's entry point does."""
    done = subprocess.run(
        [str(installed.console_script), *args],
        input=stdin,
        cwd=installed.workdir,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
    )
    return CliRun(done.returncode, done.stdout, done.stderr)


def wheel_contents(wheel: Path) -> tuple[dict[str, list[str]], list[str]]:
    """The core metadata fields (each with all its values) and the file names of a wheel."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata_name,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(metadata_name).decode())
    return {key: message.get_all(key) for key in set(message.keys())}, names


def test_the_wheel_declares_the_distribution_name_version_and_mit_license(installed):
    fields, names = wheel_contents(installed.wheel)
    assert fields.get("Name") == [DISTRIBUTION]
    assert fields.get("Version") == [__version__]
    assert fields.get("License-Expression") == ["MIT"]
    assert fields.get("License-File") == ["LICENSE"]
    dist_info = f"airbyte_destination_heap_analytics-{__version__}.dist-info"
    assert f"{dist_info}/licenses/LICENSE" in names
    assert "destination_heap_analytics/spec.json" in names
    assert not [
        name for name in names if name.startswith(("unit_tests", "integration_tests", "bench"))
    ]


def test_the_fresh_venv_reports_the_version_and_imports_its_own_copy(installed):
    probe = (
        "import importlib.metadata, json, destination_heap_analytics as package;"
        f"print(json.dumps({{'version': importlib.metadata.version({DISTRIBUTION!r}),"
        "'package_version': package.__version__, 'module': package.__file__}))"
    )
    report = json.loads(run_checked([installed.python, "-c", probe], installed.workdir, 60))
    assert report["version"] == __version__
    assert report["package_version"] == __version__
    assert is_inside(Path(report["module"]), installed.venv_dir)
    assert not is_inside(Path(report["module"]), ROOT)
    assert not is_inside(installed.workdir, ROOT)


def test_the_console_script_runs_the_fresh_venv_python(installed):
    shebang = installed.console_script.read_text().splitlines()[0]
    assert Path(shebang.removeprefix("#!")).parent == installed.python.parent


def test_installed_spec_is_the_packaged_spec(installed):
    run = run_installed_cli(installed, "spec")
    assert run.returncode == 0, run.stderr
    (message,) = run.of_type("SPEC")
    packaged = json.loads((ROOT / "destination_heap_analytics" / "spec.json").read_text())
    assert message["spec"]["connectionSpecification"] == packaged["connectionSpecification"]


def test_installed_check_succeeds_against_the_sandbox(installed, sandbox):
    config = write_json(installed.workdir, "check.json", sample_config("track", sandbox.url))
    run = run_installed_cli(installed, "check", "--config", str(config))
    assert run.returncode == 0, run.stderr
    (status,) = run.of_type("CONNECTION_STATUS")
    assert status["connectionStatus"]["status"] == "SUCCEEDED"
    (event,) = sandbox.accepted("track")
    assert event["idempotency_key"] == "airbyte-preflight-check"


def test_installed_write_loads_the_sample_records_and_returns_their_states(installed, sandbox):
    messages = (SAMPLES / "messages.jsonl").read_text()
    parsed = [json.loads(line) for line in messages.splitlines() if line.strip()]
    records = [m["record"]["data"] for m in parsed if m["type"] == "RECORD"]
    states = [m["state"] for m in parsed if m["type"] == "STATE"]
    config = write_json(installed.workdir, "write.json", sample_config("track", sandbox.url))
    catalog = shutil.copy(SAMPLES / "configured_catalog.json", installed.workdir)
    run = run_installed_cli(
        installed, "write", "--config", str(config), "--catalog", str(catalog), stdin=messages
    )
    assert run.returncode == 0, run.stderr
    accepted = sandbox.accepted("track")
    assert sorted(item["identity"] for item in accepted) == sorted(r["email"] for r in records)
    returned = [{k: v for k, v in s.items() if k != "destinationStats"} for s in run.states]
    assert returned == states
