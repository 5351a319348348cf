"""Heap's two silent identify rules, applied within a sync: a pair Heap would drop is refused
with its reason, every other pair passes, whatever the order and mix of pairs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from destination_heap_analytics.mapping.identify_rules import (
    SECOND_IDENTITY,
    USER_ID_LIMIT,
    IdentifyPairs,
)
from destination_heap_analytics.mapping.transformer import InvalidRecord


def pair(identity: str, user_id: int) -> dict:
    return {"identity": identity, "user_id": str(user_id)}


def outcome(pairs: IdentifyPairs, item: dict) -> str:
    try:
        assert pairs.admit(item) is item
    except InvalidRecord as refused:
        return refused.reason
    return "sent"


def test_a_user_id_keeps_its_first_identity():
    pairs = IdentifyPairs()
    assert outcome(pairs, pair("ann", 1)) == "sent"
    assert outcome(pairs, pair("bob", 1)) == SECOND_IDENTITY
    assert outcome(pairs, pair("ann", 1)) == "sent"  # the same pair again: Heap keeps it as is


def test_an_identity_takes_ten_user_ids_and_the_eleventh_is_refused():
    pairs = IdentifyPairs()
    assert [outcome(pairs, pair("ann", n)) for n in range(10)] == ["sent"] * 10
    assert outcome(pairs, pair("ann", 10)) == USER_ID_LIMIT
    assert outcome(pairs, pair("ann", 3)) == "sent"  # an old one again still counts once
    assert outcome(pairs, pair("bob", 10)) == "sent"  # the refused user_id is still free


def test_a_refused_pair_does_not_count_for_either_rule():
    pairs = IdentifyPairs()
    for n in range(10):
        pairs.admit(pair("ann", n))
    assert outcome(pairs, pair("ann", 99)) == USER_ID_LIMIT
    assert outcome(pairs, pair("bob", 99)) == "sent"
    assert outcome(pairs, pair("cat", 0)) == SECOND_IDENTITY
    assert [outcome(pairs, pair("cat", 100 + n)) for n in range(10)] == ["sent"] * 10


def test_the_reasons_name_no_value():
    for reason in (SECOND_IDENTITY, USER_ID_LIMIT):
        assert "ann" not in reason and "Heap" in reason and "not sent" in reason


def heap_model(items: list[tuple[str, int]]) -> list[str]:
    """What Heap would do with each pair, read from its documentation: a user_id keeps its
    first identity, an identity gathers at most 10 user_ids (all within one month here)."""
    owner: dict[int, str] = {}
    gathered: dict[str, set[int]] = {}
    seen = []
    for identity, user_id in items:
        if user_id in owner:
            seen.append("sent" if owner[user_id] == identity else SECOND_IDENTITY)
        elif len(gathered.get(identity, ())) >= 10:
            seen.append(USER_ID_LIMIT)
        else:
            owner[user_id] = identity
            gathered.setdefault(identity, set()).add(user_id)
            seen.append("sent")
    return seen


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "A", "é"]), st.integers(0, 40)), max_size=120
    )
)
def test_generated_pairs_are_refused_exactly_where_heap_would_drop_them(items):
    pairs = IdentifyPairs()
    assert [outcome(pairs, pair(*item)) for item in items] == heap_model(items)


@pytest.mark.parametrize("user_id", ["9007199254740991", "0"])
def test_user_ids_at_the_ends_of_the_range_are_kept_apart(user_id):
    pairs = IdentifyPairs()
    assert pairs.admit({"identity": "x", "user_id": user_id})
    with pytest.raises(InvalidRecord):
        pairs.admit({"identity": "y", "user_id": user_id})
