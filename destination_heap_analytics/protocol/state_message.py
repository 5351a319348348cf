"""STATE messages as the platform sent them, and the one change the connector makes to them.

Airbyte 1.7+ attaches an integer `id` to every state it forwards and fails the attempt when a
state comes back without it; newer protocols add fields of their own; and a state's contents are
the source's cursor, which can be anything JSON allows (integers wider than 64 bits, blobs
nested hundreds of levels deep, lone UTF-16 surrogate escapes). The CDK's models keep none of
that: they drop unknown fields, and the values they do keep do not always survive the trip.

So a state is never turned into a model. Its line is kept as text; `json_spans` finds the few
members the connector reads (the state's type and stream descriptor), and `emitted` writes the
line back with only `destinationStats` replaced. Everything else, at every level, is copied from
the input character for character. No content of a state can end a sync: a line that is valid
JSON but not a complete state is skipped and counted like any unreadable line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from airbyte_cdk.models import AirbyteMessageSerializer, AirbyteStateMessage, Type

from destination_heap_analytics.config.settings import StreamId
from destination_heap_analytics.protocol.json_spans import (
    Member,
    NotJson,
    last_member,
    object_members,
)


class StateKind(StrEnum):
    STREAM = "STREAM"
    GLOBAL = "GLOBAL"
    LEGACY = "LEGACY"


class NotAState(ValueError):
    """The line is a valid JSON object, but not a complete STATE message."""


@dataclass(frozen=True)
class DestinationStats:
    """Protocol 0.18's `destinationStats`: `record_count` records of the state's chunk were
    loaded (or deliberately ignored), `rejected_count` were invalid or refused by Heap."""

    record_count: int
    rejected_count: int

    def json(self) -> str:
        return (
            f'{{"recordCount":{float(self.record_count)!r},'
            f'"rejectedRecordCount":{float(self.rejected_count)!r}}}'
        )


@dataclass(frozen=True, eq=False)
class StateMessage:
    """One STATE line: its text and what the connector needs to know to hold it."""

    type: ClassVar[Type] = Type.STATE
    """As an `AirbyteMessage`'s, so the writer dispatches both alike."""
    text: str
    kind: StateKind
    stream: StreamId | None
    """The stream descriptor of a STREAM state; None for the others."""
    _state: Member
    _state_members: tuple[Member, ...]

    @classmethod
    def parse(cls, text: str) -> StateMessage | None:
        """The state on this line; None when the line is not a STATE message at all.

        Raises NotJson when the text is not valid JSON, NotAState when it is a STATE message
        without the parts the protocol requires.
        """
        text = text.strip()
        members = object_members(text)
        if _string(text, last_member(members, "type")) != "STATE":
            return None
        state = last_member(members, "state")
        if state is None or text[state.start] != "{":
            raise NotAState("a STATE message without its state object")
        state_members = tuple(object_members(text, state.start, state.end))
        declared = _string(text, last_member(list(state_members), "type"))
        state_kind = _state_kind(declared)
        stream = None
        if state_kind is StateKind.STREAM:
            stream = _stream_descriptor(text, state_members)
        elif declared == "GLOBAL":
            _require_object(text, state_members, "global")
        elif state_kind is StateKind.LEGACY:
            data = last_member(state_members, "data")
            if data is None or text[data.start : data.end] == "null":
                raise NotAState("a legacy state without its data")
        return cls(text, state_kind, stream, state, state_members)

    def emitted(self, stats: DestinationStats) -> EmittedState:
        """The line as it came, with `destinationStats` (every copy of it) replaced by `stats`."""
        kept = [
            self.text[member.key_start : member.end]
            for member in self._state_members
            if member.key != "destinationStats"
        ]
        kept.append(f'"destinationStats":{stats.json()}')
        state = "{" + ",".join(kept) + "}"
        return EmittedState(self.text[: self._state.start] + state + self.text[self._state.end :])


NOT_A_STRING = object()
"""What `_string` returns for a value that is there but not a string."""


def _string(text: str, member: Member | None) -> str | object | None:
    """A member's value when it is a string (a type, a stream name); None when it is absent or
    null. Nothing else is decoded, so no content of a state is ever built into Python values."""
    if member is None or text[member.start : member.end] == "null":
        return None
    if text[member.start] != '"':
        return NOT_A_STRING
    return json.loads(text[member.start : member.end])


def _state_kind(value: object) -> StateKind:
    """The protocol's `type`; a state without one is LEGACY, as the protocol says. An unknown
    type is held like a GLOBAL one (it waits for every stream), the safe reading."""
    if value is None:
        return StateKind.LEGACY
    if value is NOT_A_STRING:
        raise NotAState("a state whose type is not a string")
    if value == "STREAM":
        return StateKind.STREAM
    if value == "LEGACY":
        return StateKind.LEGACY
    return StateKind.GLOBAL


def _require_object(text: str, members: tuple[Member, ...], key: str) -> Member:
    found = last_member(list(members), key)
    if found is None or text[found.start] != "{":
        raise NotAState(f"a state without its '{key}' object")
    return found


def _stream_descriptor(text: str, members: tuple[Member, ...]) -> StreamId:
    stream = _require_object(text, members, "stream")
    inner = object_members(text, stream.start, stream.end)
    descriptor = last_member(inner, "stream_descriptor")
    if descriptor is None or text[descriptor.start] != "{":
        raise NotAState("a STREAM state without its stream descriptor")
    fields = object_members(text, descriptor.start, descriptor.end)
    name = _string(text, last_member(fields, "name"))
    namespace = _string(text, last_member(fields, "namespace"))
    if type(name) is not str or not (namespace is None or type(namespace) is str):
        raise NotAState("a STREAM state whose descriptor has no name")
    return (namespace, name)


@dataclass(frozen=True)
class EmittedState:
    """A state on its way back to the platform: the line to print, exactly.

    `type` and `state` let a Python caller of `write` read it as it reads an `AirbyteMessage`;
    `state` is the CDK's model of the line, which keeps only the fields the CDK knows, so it is
    for reading, never for printing."""

    line: str
    type: ClassVar[Type] = Type.STATE

    @property
    def state(self) -> AirbyteStateMessage:
        return AirbyteMessageSerializer.load(json.loads(self.line)).state


def parse_state_line(line: bytes) -> StateMessage | None:
    """A stdin line as a state; None when it is not one. Raises NotJson (also for bytes that
    are not UTF-8) and NotAState as `StateMessage.parse` does."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise NotJson("not UTF-8") from None
    return StateMessage.parse(text)
