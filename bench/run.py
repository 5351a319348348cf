"""`make bench`: the real CLI against the local Heap sandbox, every row measured in one run.

Prints one markdown table plus the target ratios, and writes the same to bench/out/results.md.
Each row is one child process measured with os.wait4: wall time, user+sys CPU and peak RSS of
that process alone. The sandbox runs in its own process, so its CPU is not counted. Throughput
rows turn client-side pacing off (`max_events_per_minute: 0`): the sandbox enforces no limit
there, and pacing has its own row. A last table gives every record its own identity, paced at
max_events_per_minute 10,000,000 and unpaced: what the per-identity pacing costs in memory.

Usage: python bench/run.py [--records 1000000] [--quick] [--only identities]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import USERS, write_input  # noqa: E402

OUT = ROOT / "bench" / "out"
CATALOG = ROOT / "sample_files" / "configured_catalog.json"
PACING_SCALE = 0.1
"""The paced run shrinks Heap's one-minute windows to six seconds, in the connector and in the
sandbox alike (DESTINATION_HEAP_ANALYTICS_PACING_TIME_SCALE)."""
TRACK_LIMIT, IDENTITY_LIMIT = 15_000, 1_000
MANY_IDENTITIES_PER_MINUTE = 10_000_000
"""The highest max_events_per_minute: the per-app limit stays out of the way, so a million
identities all fall within the per-identity window."""
TABLE_HEADER = (
    "| run | latency ms | records | wall s | records/s | connector CPU s | records per CPU-s "
    "| requests | peak RSS MB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)
API = {
    "api_type": "track",
    "property_columns": "blocked,created_at,updated_at,name",
    "event_column": "identities.connection",
    "identity_column": "email",
    "timestamp_column": "updated_at",
}


@dataclass
class Row:
    name: str
    latency_ms: int
    records: int
    wall: float
    cpu: float
    requests: int
    rss_mb: float

    @property
    def rate(self) -> float:
        return self.records / self.wall

    @property
    def per_cpu(self) -> float:
        return self.records / self.cpu

    def markdown(self) -> str:
        requests = "—" if self.requests < 0 else f"{self.requests:,}"
        return (
            f"| {self.name} | {self.latency_ms} | {self.records:,} | {self.wall:.2f} | "
            f"{self.rate:,.0f} | {self.cpu:.2f} | {self.per_cpu:,.0f} | {requests} | "
            f"{self.rss_mb:.0f} |"
        )


class Sandbox:
    """The sandbox as a child process, driven over its /_sandbox/ control endpoints."""

    def __init__(self, *extra: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "integration_tests.heap_sandbox",
                "--port",
                "0",
                "--no-bodies",
                "--count-only",
                *extra,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"sandbox did not start: {line!r}")
        self.url = line.removeprefix("listening on ")

    def control(self, path: str, payload: dict | None = None) -> dict:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.url}/_sandbox/{path}", data=data, method="POST" if data is not None else "GET"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def prepare(self, latency_ms: int) -> None:
        self.control("reset", {})
        self.control("faults", {"latency_ms": latency_ms})

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def run_child(
    command: list[str], stdin: Path, env: dict | None = None
) -> tuple[float, float, float, str]:
    """(wall s, user+sys CPU s, peak RSS MB, stdout) of one child process, via os.wait4."""
    with stdin.open("rb") as source:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdin=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env
        )
        stdout_chunks = []
        # Drain stdout while the child runs (it can print a lot); stderr is small.
        for chunk in iter(lambda: process.stdout.read(65536), b""):
            stdout_chunks.append(chunk)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        stderr = process.stderr.read()
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command[1:3])} exited {process.returncode}: {stderr.decode()[-2000:]}"
        )
    return (
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        b"".join(stdout_chunks).decode(),
    )


def config_file(name: str, base_url: str, **settings) -> Path:
    path = OUT / f"config-{name}.json"
    path.write_text(json.dumps({"app_id": "11", "base_url": base_url, "api": API, **settings}))
    return path


def connector(config: Path) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "main.py"),
        "write",
        "--config",
        str(config),
        "--catalog",
        str(CATALOG),
    ]


def loaded(stdout: str) -> int:
    for line in stdout.splitlines():
        if "Total loaded:" in line:
            return int(line.rsplit("Total loaded: ", 1)[1].split(".")[0])
    raise RuntimeError("no totals line in the connector output")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records in the big runs")
    parser.add_argument("--quick", action="store_true", help="small inputs, to try the script")
    parser.add_argument(
        "--only", choices=["identities"], help="run only the one-identity-per-record table"
    )
    args = parser.parse_args()
    big = 20_000 if args.quick else args.records
    if args.only == "identities":
        report = render_identities(identities_rows(big))
        print(report)
        (OUT / "results-identities.md").write_text(report)
        return 0
    sizes = {
        "big": big,
        "tenth": big // 10,
        "legacy0": 300 if args.quick else 2_000,
        "legacy50": 40 if args.quick else 200,
        "single0": 500 if args.quick else 5_000,
        "single50": 100 if args.quick else 1_000,
        "paced": 6_000 if args.quick else 60_000,
    }
    inputs = {name: write_input(OUT / f"input-{n}.jsonl", n) for name, n in sizes.items()}
    rows: list[Row] = []
    sandbox = Sandbox()
    try:
        wall, cpu, rss, _ = run_child(
            [sys.executable, str(ROOT / "bench" / "parse_only.py")], inputs["big"]
        )
        rows.append(Row("bare CDK parse (no destination)", 0, sizes["big"], wall, cpu, -1, rss))
        for latency in (0, 50):
            plan = [
                (
                    "0.1.0-style: 1 request per row, new connection each",
                    "legacy",
                    f"legacy{latency}",
                ),
                ("this connector, batch_size=1", "single", f"single{latency}"),
                ("this connector, bulk defaults (1000 × 4)", "bulk", "big"),
            ]
            for label, kind, size in plan:
                sandbox.prepare(latency)
                settings = {"max_events_per_minute": 0}
                if kind == "single":
                    settings["batch_size"] = 1
                config = config_file(kind, sandbox.url, **settings)
                if kind == "legacy":
                    command = [sys.executable, str(ROOT / "bench" / "legacy_010.py"), str(config)]
                else:
                    command = connector(config)
                wall, cpu, rss, out = run_child(command, inputs[size])
                counters = sandbox.control("counters")
                if kind != "legacy" and loaded(out) != sizes[size]:
                    raise RuntimeError(f"{label}: loaded {loaded(out)} of {sizes[size]}")
                if counters["items_accepted"] != sizes[size]:
                    raise RuntimeError(f"{label}: sandbox accepted {counters['items_accepted']}")
                rows.append(Row(label, latency, sizes[size], wall, cpu, counters["requests"], rss))
        sandbox.prepare(0)
        config = config_file("bulk", sandbox.url, max_events_per_minute=0)
        wall, cpu, rss, _ = run_child(connector(config), inputs["tenth"])
        rows.append(
            Row(
                "this connector, bulk defaults (1000 × 4)",
                0,
                sizes["tenth"],
                wall,
                cpu,
                sandbox.control("counters")["requests"],
                rss,
            )
        )
    finally:
        sandbox.stop()
    paced = paced_run(inputs["paced"], sizes["paced"])
    report = render(rows, paced, sizes) + "\n" + render_identities(identities_rows(big))
    print(report)
    (OUT / "results.md").write_text(report)
    return 0


def paced_run(messages: Path, count: int) -> dict:
    """Defaults (pacing on) against a sandbox enforcing Heap's track limits, scaled in time."""
    window = 60 * PACING_SCALE
    sandbox = Sandbox(
        "--rate-limit-events",
        str(TRACK_LIMIT),
        "--rate-limit-window-seconds",
        str(window),
        "--rate-limit-per-identity",
        str(IDENTITY_LIMIT),
    )
    try:
        config = config_file("paced", sandbox.url)
        env = {**os.environ, "DESTINATION_HEAP_ANALYTICS_PACING_TIME_SCALE": str(PACING_SCALE)}
        wall, cpu, rss, out = run_child(connector(config), messages, env=env)
        state = sandbox.control("state")
    finally:
        sandbox.stop()
    accepted = [r for r in state["requests"] if r["status"] == 200]
    times = sorted(r["received_at"] for r in accepted)
    span = times[-1] - times[0]
    first_items = min(accepted, key=lambda r: r["received_at"])["items"]
    achieved = (state["counters"]["items_accepted"] - first_items) / span * window
    return {
        "records": count,
        "window": window,
        "limit": TRACK_LIMIT,
        "achieved_per_window": achieved,
        "ratio": achieved / TRACK_LIMIT,
        "rate_limited_429": state["counters"]["rate_limited_429"],
        "lost": count - state["counters"]["items_accepted"],
        "loaded": loaded(out),
        "wall": wall,
        "identities": USERS,
    }


def identities_rows(count: int) -> list[Row]:
    """Every record its own identity, paced at MANY_IDENTITIES_PER_MINUTE and with pacing off,
    against a sandbox enforcing no limit: the memory that per-identity pacing takes."""
    messages = write_input(OUT / f"input-{count}-distinct.jsonl", count, users=None)
    paced = f"paced (max_events_per_minute {MANY_IDENTITIES_PER_MINUTE:,})"
    plan = [(paced, MANY_IDENTITIES_PER_MINUTE), ("pacing off (max_events_per_minute 0)", 0)]
    rows = []
    sandbox = Sandbox()
    try:
        for label, per_minute in plan:
            sandbox.prepare(0)
            config = config_file("identities", sandbox.url, max_events_per_minute=per_minute)
            wall, cpu, rss, out = run_child(connector(config), messages)
            counters = sandbox.control("counters")
            if loaded(out) != count or counters["items_accepted"] != count:
                raise RuntimeError(f"{label}: loaded {loaded(out)} of {count}")
            name = f"one identity per record, {label}"
            rows.append(Row(name, 0, count, wall, cpu, counters["requests"], rss))
    finally:
        sandbox.stop()
    return rows


def render_identities(rows: list[Row]) -> str:
    paced, unpaced = rows
    table = "\n".join([TABLE_HEADER, *(row.markdown() for row in rows)])
    return (
        f"{table}\n\n- Peak RSS with {paced.records:,} distinct identities: {paced.rss_mb:.0f} MB "
        f"paced, {unpaced.rss_mb:.0f} MB with pacing off (target ≤ 150 MB at any "
        "max_events_per_minute).\n"
    )


def render(rows: list[Row], paced: dict, sizes: dict) -> str:
    table = "\n".join([TABLE_HEADER, *(row.markdown() for row in rows)])
    parse = rows[0]
    find = {(r.name.split(",")[0].split(":")[0], r.latency_ms, r.records): r for r in rows}
    bulk0 = find[("this connector", 0, sizes["big"])]
    bulk50 = next(r for r in rows if r.latency_ms == 50 and "bulk" in r.name)
    legacy50 = next(r for r in rows if r.latency_ms == 50 and "0.1.0" in r.name)
    bulk_tenth = rows[-1]
    ratio_50ms = bulk50.rate / legacy50.rate
    cpu_ratio = bulk0.per_cpu / parse.per_cpu
    lines = [
        table,
        "",
        f"- Requests for {bulk0.records:,} records with the defaults: {bulk0.requests:,} "
        "(target ≤ 1,000 per 1M).",
        f"- At 50 ms latency, bulk ÷ 0.1.0-style records/s: {ratio_50ms:,.0f}× (target ≥ 1000×).",
        "- Records per connector CPU-second ÷ bare CDK parse records per CPU-second: "
        f"{cpu_ratio:.0%} (target ≥ 50%).",
        f"- Peak RSS: {bulk0.rss_mb:.0f} MB for {bulk0.records:,} records, "
        f"{bulk_tenth.rss_mb:.0f} MB for {bulk_tenth.records:,} (target ≤ 150 MB, not growing).",
        f"- Paced run ({paced['records']:,} records, defaults, windows scaled to "
        f"{paced['window']:.0f} s, sandbox enforcing {paced['limit']:,}/window per app and "
        f"{IDENTITY_LIMIT:,}/window per identity): achieved {paced['achieved_per_window']:,.0f} "
        f"per window = {paced['ratio']:.1%} of the limit; 429s: {paced['rate_limited_429']}; "
        f"records lost: {paced['lost']} (targets ≥ 95%, 0, 0).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
