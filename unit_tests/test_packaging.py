"""Packaging facts that Airbyte's registry, PyAirbyte and the image rely on, kept in agreement.

The version lives in destination_heap_analytics/_version.py. setup.py reads it; metadata.yaml,
the Dockerfile label and the docs changelog repeat it, and these tests fail when one of them
differs. integration_tests/test_package.py checks the built wheel itself.
"""

from __future__ import annotations

import json
import re
import runpy
import sys
import types
import xml.etree.ElementTree as ElementTree
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from destination_heap_analytics._version import __version__

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "heap-analytics.md"
DISTRIBUTION = "airbyte-destination-heap-analytics"

# The rows Airbyte's metadata validator requires in a destination's "Supported sync modes" table,
# and the destination sync mode of the spec that each one needs.
REGISTRY_SYNC_MODES = {
    "Full Refresh - Overwrite": "overwrite",
    "Full Refresh - Append": "append",
    "Full Refresh - Overwrite + Deduped": "overwrite_dedup",
    "Incremental Sync - Append": "append",
    "Incremental Sync - Append + Deduped": "append_dedup",
}


@pytest.fixture(scope="module")
def setup_arguments() -> dict[str, Any]:
    """The keyword arguments setup.py passes to setuptools.setup().

    setup.py runs for real, with a stand-in setuptools that records the call, so this needs no
    particular setuptools version and builds nothing.
    """
    recorded: dict[str, Any] = {}
    stand_in = types.ModuleType("setuptools")
    stand_in.setup = recorded.update
    stand_in.find_packages = lambda **_: ["destination_heap_analytics"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "setuptools", stand_in)
        runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    return recorded


@pytest.fixture(scope="module")
def metadata() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "metadata.yaml").read_text())["data"]


@pytest.fixture(scope="module")
def docs() -> str:
    return DOCS.read_text()


def section(markdown: str, heading: str) -> str:
    """The text under a `## heading`, up to the next heading of level 2."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"docs/heap-analytics.md has no '## {heading}' section"
    return match.group(1)


def table_rows(markdown: str) -> list[list[str]]:
    """The body rows of the first Markdown table in `markdown`, as lists of stripped cells."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]
    return cells[2:]  # after the header and the |---| row


def heading_anchors(markdown: str) -> set[str]:
    """Anchors Docusaurus gives the headings: lower case, punctuation dropped, spaces to '-'."""
    headings = re.findall(r"^#{1,6} (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_setup_py_builds_the_airbyte_distribution_at_the_single_source_version(setup_arguments):
    assert setup_arguments["name"] == DISTRIBUTION
    assert setup_arguments["version"] == __version__
    assert setup_arguments["entry_points"]["console_scripts"] == [
        "destination-heap-analytics=destination_heap_analytics.run:run"
    ]


def test_setup_py_declares_the_mit_license_and_ships_its_text(setup_arguments):
    assert setup_arguments["license_expression"] == "MIT"
    assert not [c for c in setup_arguments["classifiers"] if c.startswith("License ::")]
    (license_file,) = setup_arguments["license_files"]
    assert (ROOT / license_file).read_text().startswith("MIT License\n")


def test_version_is_a_plain_release_number():
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_metadata_yaml_carries_the_version_and_the_pypi_package_name(metadata):
    assert metadata["dockerImageTag"] == __version__
    assert metadata["license"] == "MIT"
    assert metadata["remoteRegistries"]["pypi"] == {"enabled": True, "packageName": DISTRIBUTION}


def test_dockerfile_labels_the_image_with_the_version_and_repository(metadata):
    labels = dict(re.findall(r"^LABEL (\S+)=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M))
    assert labels["io.airbyte.version"] == __version__
    assert labels["io.airbyte.name"] == metadata["dockerRepository"]


def test_docs_changelog_is_collapsible_and_starts_with_the_version(docs):
    changelog = section(docs, "Changelog")
    assert changelog.lstrip().startswith("<details>\n  <summary>Expand to review</summary>\n")
    assert changelog.rstrip().endswith("</details>")
    versions = [row[0] for row in table_rows(changelog)]
    assert versions[0] == __version__
    assert versions[-1] == "0.1.0"


def test_every_breaking_change_has_a_deadline_a_message_and_a_guide_in_the_docs(metadata, docs):
    breaking = metadata["releases"]["breakingChanges"]
    changelog_versions = {row[0] for row in table_rows(section(docs, "Changelog"))}
    anchors = heading_anchors(docs)
    assert "0.2.0" in breaking  # it changes what 0.1.0 users get (see the guide)
    for version, change in breaking.items():
        assert version in changelog_versions
        assert date.fromisoformat(change["upgradeDeadline"])
        assert len(change["message"]) > 100
        url = urlsplit(change["migrationDocumentationUrl"])
        assert url._replace(fragment="").geturl() == metadata["documentationUrl"]
        assert url.fragment in anchors, f"docs/heap-analytics.md has no heading #{url.fragment}"


def test_docs_sync_modes_table_lists_what_the_registry_requires_as_the_spec_says(docs):
    spec = json.loads((ROOT / "destination_heap_analytics" / "spec.json").read_text())
    supported = set(spec["supported_destination_sync_modes"])
    rows = {row[0]: row[1] for row in table_rows(section(docs, "Supported sync modes"))}
    assert set(rows) == set(REGISTRY_SYNC_MODES)
    for mode, sync_mode in REGISTRY_SYNC_MODES.items():
        assert rows[mode] == ("Yes" if sync_mode in supported else "No"), mode


def test_icon_is_a_square_svg_that_metadata_names(metadata):
    assert metadata["icon"] == "icon.svg"
    root = ElementTree.parse(ROOT / "icon.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("width") == root.get("height")
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
