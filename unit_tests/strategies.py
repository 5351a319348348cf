"""Hypothesis strategies the unit and integration tests share, each written once."""

from __future__ import annotations

from hypothesis import strategies as st


def json_values(max_leaves: int = 30) -> st.SearchStrategy:
    """Any JSON value a record can hold once read: integers far beyond 64 bits, any float, any
    text, a lone surrogate (Python strings can hold one), nested lists and objects."""
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**300), max_value=2**300)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(st.characters(codec="utf-8"))
        | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=6), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )
