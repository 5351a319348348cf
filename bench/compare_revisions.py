"""CPU per record of this checkout against an earlier revision, measured in one run.

    python bench/compare_revisions.py REV [--records 20000] [--rounds 3] [--callgrind]

Each side runs the same in-process sync: the benchmark's input (bench/inputs.py, the sample track
mapping) read by the connector's own reader and fed to its writer, with HTTP replaced by a no-op
post and the garbage collector tuned as the console entry point tunes it (`run.py`), so what is
measured is the connector's CPU per record in a real sync, not the network or the process's
start-up. The sides alternate, `--rounds` times, and the ratio of their medians is printed.

`--callgrind` also counts instructions with valgrind (the same count on every run, however busy
the machine): a run on no records is subtracted from a run on `--records`, which leaves the
instructions per record. It takes a few minutes per side.

REV is checked out into a temporary git worktree, removed at the end. The harness imports
the modules by their 0.3.0 paths, which later layouts still offer
(destination_heap_analytics/_compat.py), so the one harness runs on every side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import write_input  # noqa: E402

HARNESS = r"""
import json, logging, sys, time
root, input_path = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer
from destination_heap_analytics import client as client_module
from destination_heap_analytics import writer as writer_module
from destination_heap_analytics.config import parse_config
from destination_heap_analytics.input_reader import read_messages
from destination_heap_analytics.stats import InputStats

try:  # the collector as the console entry point tunes it, so this is the CPU of a real sync
    from destination_heap_analytics.run import tune_garbage_collector
except ImportError:  # a revision from before the entry point tuned it
    tune_garbage_collector = lambda: None
tune_garbage_collector()
client_module.HeapClient.post = lambda self, body, url=None: None  # no network: CPU only
config = parse_config(json.loads(sys.argv[3]))
catalog = ConfiguredAirbyteCatalogSerializer.load(
    json.load(open(f"{root}/sample_files/configured_catalog.json"))
)
lines = open(input_path, "rb").readlines()
stats = InputStats()
start = getattr(writer_module.HeapWriter, "start", None)
make = start or writer_module.HeapWriter  # `start` since 0.3.0
writer = make(config, catalog, stats)
started = time.process_time()
for message in read_messages(lines, stats, logging.getLogger("bench")):
    writer.process(message)
    writer.take_output()
writer.finish()
elapsed = time.process_time() - started
writer.close()
print(elapsed / max(1, len(lines)) * 1e6)
"""

CONFIG = {
    "app_id": "11",
    "base_url": "https://heap.invalid",
    "max_events_per_minute": 0,
    "api": {
        "api_type": "track",
        "property_columns": "blocked,created_at,updated_at,name",
        "event_column": "identities.connection",
        "identity_column": "email",
        "timestamp_column": "updated_at",
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the earlier revision, e.g. a commit or tag")
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callgrind", action="store_true")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        earlier = scratch_path / "earlier"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(earlier), options.rev],
            check=True,
            capture_output=True,
        )
        try:
            sides = {options.rev: earlier, "this checkout": ROOT}
            records = write_input(scratch_path / "records.jsonl", options.records)
            nothing = scratch_path / "nothing.jsonl"
            nothing.write_text("")
            report(sides, records, nothing, options)
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(earlier)],
                check=False,
                capture_output=True,
            )
    return 0


def report(sides: dict[str, Path], records: Path, nothing: Path, options) -> None:
    harness = records.parent / "harness.py"
    harness.write_text(HARNESS)
    timings: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(options.rounds):
        for name, root in sides.items():
            timings[name].append(float(run(harness, root, records)))
    medians = {name: statistics.median(values) for name, values in timings.items()}
    print("| side | µs CPU per record (median) | rounds |")
    print("|---|---:|---|")
    for name, values in timings.items():
        shown = ", ".join(f"{value:.2f}" for value in values)
        print(f"| {name} | {medians[name]:.2f} | {shown} |")
    earlier, current = medians.values()
    print(f"\nThis checkout ÷ {next(iter(sides))}: {current / earlier:.3f}")
    if options.callgrind:
        counts = {
            name: (callgrind(harness, root, records) - callgrind(harness, root, nothing))
            / options.records
            for name, root in sides.items()
        }
        for name, count in counts.items():
            print(f"Instructions per record, {name}: {count:,.0f}")
        earlier_count, current_count = counts.values()
        ratio = current_count / earlier_count
        print(f"This checkout ÷ {next(iter(sides))} (instructions): {ratio:.3f}")


def run(harness: Path, root: Path, records: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(harness), str(root), str(records), json.dumps(CONFIG)],
        check=True,
        capture_output=True,
        text=True,
        cwd=root,
    )
    return done.stdout.strip().splitlines()[-1]


def callgrind(harness: Path, root: Path, records: Path) -> int:
    out = records.parent / "callgrind.out"
    done = subprocess.run(
        [
            "env",
            "PYTHONHASHSEED=0",  # the same string hashes on every run, so the same count
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(harness),
            str(root),
            str(records),
            json.dumps(CONFIG),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=root,
    )
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1])
    raise RuntimeError("callgrind printed no instruction count")


if __name__ == "__main__":
    sys.exit(main())
