"""CPU per record of the transform alone, for this checkout and earlier revisions.

    python bench/transform_cpu.py [REV ...] [--records 2000] [--repeat 30] [--rounds 3]

Each side builds the transform of the benchmark's mapping (bench/compare_revisions.py's CONFIG)
with its own code and runs it over the same benchmark records (bench/inputs.py), with the garbage
collector off, `--repeat` times in one process; the best pass counts (wall time, which on a busy
machine only ever adds). The sides alternate, `--rounds` times, and the best of the rounds is
printed. What compare_revisions.py measures for a whole sync, this narrows to the transform.

Each REV is checked out into a temporary git worktree, removed at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HARNESS = r"""
import gc, json, sys, time
root, bench, records, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, root)
from destination_heap_analytics.config import parse_config
from destination_heap_analytics.transformer import RecordTransformer, stream_key
sys.path.insert(0, bench)
from bench.compare_revisions import CONFIG
from bench.inputs import record
transform = RecordTransformer(parse_config(CONFIG).default_mapping).transform
key = stream_key(None, "users")
data = [json.loads(json.dumps(record(n))) for n in range(1, records + 1)]
gc.disable()
best = float("inf")
for _ in range(repeat):
    started = time.perf_counter()
    for one in data:
        transform(one, key)
    best = min(best, time.perf_counter() - started)
print(best / records * 1e6)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revs", nargs="*", help="earlier revisions, e.g. commits or tags")
    parser.add_argument("--records", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        sides = {"this checkout": ROOT}
        for rev in options.revs:
            tree = Path(scratch) / rev
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
                check=True,
                capture_output=True,
            )
            sides[rev] = tree
        try:
            harness = Path(scratch) / "harness.py"
            harness.write_text(HARNESS)
            best = {name: float("inf") for name in sides}
            for _ in range(options.rounds):
                for name, root in sides.items():
                    best[name] = min(best[name], time_transform(harness, root, options))
            for name, microseconds in best.items():
                print(f"{name}: {microseconds:.2f} µs per record")
        finally:
            for rev in options.revs:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(sides[rev])],
                    check=False,
                    capture_output=True,
                )
    return 0


def time_transform(harness: Path, root: Path, options: argparse.Namespace) -> float:
    done = subprocess.run(
        [
            sys.executable,
            str(harness),
            str(root),
            str(ROOT),
            str(options.records),
            str(options.repeat),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
