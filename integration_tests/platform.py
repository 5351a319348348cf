"""What the Airbyte platform (1.7 to 2.x) does between a source and this destination, for tests.

`python main.py write < messages` is not how the connector runs in production. The platform's
replication step (airbyte-platform, `airbyte-container-orchestrator`) stands in between:

- it forwards only RECORD and STATE messages (source LOG, TRACE and CONTROL messages stop there),
  and drops records with empty data (`ReplicationTask`);
- it fills `sourceStats.recordCount` with its own count when the source sent none, then attaches
  an integer `id` to every state, counting from 1 in each attempt (`StateEnricher`,
  `StateWithId`);
- it reads each state the destination emits: a missing or non-integer `id` fails the attempt;
  the id must be one it sent, and per stream (GLOBAL and legacy: across all) ids come back in
  the order they were sent, though states may be skipped (`StreamStatsTracker`);
- it checks `destinationStats.recordCount + rejectedRecordCount` against its own count of the
  records it forwarded for that state (`StateCheckSumCountEventHandler`).

`Platform` does the same to the lines of a source, then judges the destination's stdout the way
the platform would, and says what it found wrong. It never imports the connector: it judges from
the outside, and works on the text of each line, so a state's body is compared exactly (numbers
as written, lone surrogates, nesting deeper than Python's parser could build).
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

StreamKey = tuple[str | None, str]
EVERY_STREAM = ("*", "*")
"""The ordering scope of GLOBAL and legacy states."""

_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")


DEEP_ENOUGH = 20_000
"""Python's recursion limit while the harness reads a state: the tests nest blobs deeper than
the default limit lets `json` read. Raised only for the read, so nothing else in the test
process (the connector's own reader, tested in-process) sees another limit."""


def exact(text: str) -> object:
    """A JSON text read so that equal texts mean equal values and different numbers stay
    different: floats as Decimal (1.5 and 1.50 are one value, 1e400 is no infinity)."""
    return _deep(lambda: json.loads(text, parse_float=Decimal))


def _deep(read):
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, DEEP_ENOUGH))
    try:
        return read()
    finally:
        sys.setrecursionlimit(previous)


@dataclass
class SentState:
    id: int
    scope: StreamKey
    message: object
    """The message as forwarded, its state without `destinationStats`, read with `exact`."""
    forwarded_records: int
    """The platform's own count of the records it forwarded for this state."""
    source_count: object


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    returned: list[int] = field(default_factory=list)
    """Ids of the states that came back, in output order."""
    counts: dict[int, tuple[float, float]] = field(default_factory=dict)
    """id -> (recordCount, rejectedRecordCount) from destinationStats."""

    def assert_ok(self) -> None:
        assert not self.problems, "\n".join(self.problems)


class Platform:
    """One attempt of a sync, as the orchestrator sees it."""

    def __init__(self, first_id: int = 1) -> None:
        self.sent: dict[int, SentState] = {}
        self._next_id = first_id
        self._since_state: Counter = Counter()
        self.forwarded_records: Counter = Counter()

    # -- source -> destination -------------------------------------------------------------------
    def forward(self, source_lines: list[str]) -> str:
        """The destination's stdin for these source lines."""
        out = []
        for line in source_lines:
            line = line.strip()
            if not line:
                continue
            kind = _top_level_type(line)
            if kind == "RECORD":
                message = json.loads(line)
                record = message["record"]
                if not record.get("data"):
                    continue
                stream = (record.get("namespace"), record["stream"])
                self._since_state[stream] += 1
                self.forwarded_records[stream] += 1
                out.append(line)
            elif kind == "STATE":
                out.append(self._enrich(line))
        return "\n".join(out) + "\n"

    def _enrich(self, line: str) -> str:
        """`sourceStats.recordCount` when the source gave none, and the `id`, attached as text
        so the rest of the line stays as the source wrote it."""
        state_id = self._next_id
        self._next_id += 1
        message = exact(line)
        state = message["state"]
        scope = scope_of(state)
        if scope == EVERY_STREAM:
            count = sum(self._since_state.values())
            self._since_state.clear()
        else:
            count = self._since_state.pop(scope, 0)
        if "sourceStats" not in state or "recordCount" not in state.get("sourceStats", {}):
            stats = json.dumps({"recordCount": float(count)})
            line = _insert_member(line, "state", f'"sourceStats":{stats}')
        line = _insert_member(line, "state", f'"id":{state_id}')
        message = without_destination_stats(exact(line))
        self.sent[state_id] = SentState(
            state_id, scope, message, count, message["state"]["sourceStats"]["recordCount"]
        )
        return line

    # -- destination -> platform -------------------------------------------------------------------
    def judge(self, destination_stdout: str, delivered_everything: bool = True) -> Verdict:
        """What the platform would find wrong in the destination's output. With
        `delivered_everything` (a sync that exited 0), every state sent must have come back."""
        verdict = Verdict()
        last_by_scope: dict[StreamKey, int] = {}
        last_global = 0
        for line in destination_stdout.split("\n"):
            if not line.startswith("{") or _top_level_type(line) != "STATE":
                continue
            message = exact(line)
            state = message.get("state", {})
            raw_id = _raw_member(line, "id")
            if raw_id is None:
                verdict.problems.append("State message does not contain id")
                continue
            if not _INTEGER.fullmatch(raw_id):
                verdict.problems.append(f"state id {raw_id} is not an integer")
                continue
            state_id = int(raw_id)
            sent = self.sent.get(state_id)
            if sent is None:
                verdict.problems.append(f"state id {state_id} was never sent")
                continue
            verdict.returned.append(state_id)
            if without_destination_stats(message) != sent.message:
                verdict.problems.append(f"state {state_id} came back changed")
            scope = scope_of(state)
            if scope != sent.scope:
                verdict.problems.append(f"state {state_id} changed its stream")
            previous = last_global if scope == EVERY_STREAM else last_by_scope.get(scope, 0)
            if state_id <= max(previous, last_global):
                verdict.problems.append(f"state {state_id} came back out of order")
            if scope == EVERY_STREAM:
                last_global = state_id
            else:
                last_by_scope[scope] = state_id
            stats = state.get("destinationStats")
            if not isinstance(stats, dict) or "recordCount" not in stats:
                verdict.problems.append(f"state {state_id} has no destinationStats.recordCount")
                continue
            loaded = float(stats["recordCount"])
            rejected = float(stats.get("rejectedRecordCount", 0))
            verdict.counts[state_id] = (loaded, rejected)
            if loaded + rejected != sent.forwarded_records:
                verdict.problems.append(
                    f"state {state_id}: recordCount {loaded} + rejectedRecordCount {rejected} != "
                    f"{sent.forwarded_records} records forwarded"
                )
            if float(sent.source_count) != sent.forwarded_records:
                verdict.problems.append(f"state {state_id}: the source's own count differs")
        if delivered_everything:
            unacknowledged = [
                sent.id
                for sent in self.sent.values()
                if not any(
                    later > sent.id and self.sent[later].scope in (sent.scope, EVERY_STREAM)
                    for later in verdict.returned
                )
                and sent.id not in verdict.returned
            ]
            if unacknowledged:
                verdict.problems.append(f"states never acknowledged: {unacknowledged}")
        return verdict


def without_destination_stats(message: dict) -> dict:
    state = {k: v for k, v in message["state"].items() if k != "destinationStats"}
    return {**message, "state": state}


def scope_of(state: dict) -> StreamKey:
    """The stream a state's id is tracked under: its descriptor for STREAM states."""
    if state.get("type") == "STREAM":
        descriptor = state["stream"]["stream_descriptor"]
        return (descriptor.get("namespace"), descriptor["name"])
    return EVERY_STREAM


def _top_level_type(line: str) -> str | None:
    """The message type, read without parsing the whole line (a state may be nested deeper
    than any parser here reads)."""
    found = re.match(r'\{\s*"type"\s*:\s*"([A-Z_]+)"', line)
    return found.group(1) if found else None


def _insert_member(line: str, container: str, member: str) -> str:
    """`member` added as the first member of the top-level object's `container` object; the
    platform's serialiser puts `id` elsewhere, which no reader may depend on."""
    found = re.search(re.escape(json.dumps(container)) + r"\s*:\s*\{", line)
    assert found is not None, f"no {container} object"
    at = found.end()
    rest = line[at:].lstrip()
    separator = "" if rest.startswith("}") else ","
    return line[:at] + member + separator + line[at:]


def _raw_member(line: str, key: str) -> str | None:
    """The text of `state.<key>` as the destination wrote it (so 2.0 is not taken for 2)."""
    message = _deep(
        lambda: json.loads(
            line, parse_float=lambda text: ("float", text), parse_int=lambda text: ("int", text)
        )
    )
    value = message.get("state", {}).get(key)
    if value is None:
        return None
    if isinstance(value, tuple):
        return value[1]
    return json.dumps(value)


def validate_catalog(configured_catalog: dict, destination_catalog: dict) -> list[str]:
    """The platform's check of a data-activation connection's catalog (after its mappers)
    against the destination's `discover` (ConnectionsHandler.validateCatalogWithDestinationCatalog):
    what it would refuse, one line a problem; [] when it would save the connection."""
    operations = {
        (op["object_name"], op["sync_mode"]): op for op in destination_catalog["operations"]
    }
    problems = []
    for configured in configured_catalog["streams"]:
        name = configured["stream"]["name"]
        target = configured.get("destination_object_name")
        if not target:
            problems.append(f"{name}: no destination_object_name")
            continue
        operation = operations.get((target, configured["destination_sync_mode"]))
        if operation is None:
            problems.append(f"{name}: no operation {target}/{configured['destination_sync_mode']}")
            continue
        keys = operation.get("matching_keys")
        chosen = {field for path in configured.get("primary_key") or [] for field in path}
        if keys and chosen not in [set(key) for key in keys]:
            problems.append(f"{name}: primary_key is none of the matching keys")
        schema = operation["json_schema"]
        fields = set(configured["stream"]["json_schema"].get("properties", {}))
        missing = set(schema.get("required", [])) - fields
        if missing:
            problems.append(f"{name}: required fields not mapped: {sorted(missing)}")
        if schema.get("additionalProperties") is False:
            extra = fields - set(schema["properties"])
            if extra:
                problems.append(f"{name}: fields the object does not have: {sorted(extra)}")
    return problems
