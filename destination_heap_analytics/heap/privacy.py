"""Keep record contents out of logs even when Heap quotes them back.

Our own messages never contain values. Heap's error messages are undocumented and might echo any
part of the refused item: a value, a key (keys can be data too: a map keyed by email), a value cut
in half, a value JSON-escaped (`caf\\u00e9`, `\\"`), or the whole item as JSON or as a Python or
Java repr. Searching the text for the item's values cannot catch all of these forms, so no part
of Heap's text is ever shown as it came. `sanitise` rebuilds it from a fixed vocabulary instead:
the words of Heap's field names and of validation rules, plus Heap's documented limits (the only
numbers kept). Every other token is dropped. Whatever Heap sends, a description is made of those
words only, so it cannot carry a record's contents; at most it shows that a value contained one
of them. The price is grammar: `properties.x: longer than 1023 characters` reads
`properties longer than 1023 characters`.

Other text a server controls is not shown either: the client (`client.py`) uses the standard
HTTP reason phrase instead of the server's, and withholds what urllib3's warnings quote.
"""

from __future__ import annotations

import re

from destination_heap_analytics.heap import limits as heap_limits

HEAP_FIELD_WORDS = """
    app_id events users accounts identity user_id event timestamp properties property
    idempotency_key account_id session_id body postBody api track add_user_properties
    add_account_properties item items field fields key keys value values name names id
"""
"""The fields of Heap's request bodies and endpoints, as Heap and its validators name them."""

RULE_WORDS = """
    required missing must should be is are was not no invalid valid empty object objects string
    strings number numbers integer boolean booleans array arrays null allowed longer shorter
    than too long short characters character chars exceeds exceeded exceed limit limits maximum
    minimum max min reserved unknown unexpected expected format rate json content type
    application text plain utf encoding length size more less fewer at least most greater equal
    contain contains contained only one single bulk form top level inside wrong cannot both
    provided either or and of in a an the to by for with from per non finite positive negative
    ISO date time datetime refused rejected duplicate malformed parse syntax token end input
    request requests payload large many bad server internal error errors found method forbidden
    unauthorized accepted
"""
"""Words of validation rules and HTTP errors: enough to say what is wrong, never with what."""

SANDBOX_WORDS = """
    sandbox rule reject_marker
"""
"""The wording of this project's test sandbox, so its refusals read as they are meant."""

LIMIT_NUMBERS = tuple(
    str(number)
    for number in (
        heap_limits.MAX_IDENTITY_LENGTH,
        heap_limits.MAX_EVENT_NAME_LENGTH,
        heap_limits.MAX_PROPERTY_LENGTH,
        heap_limits.MAX_ITEMS_PER_BULK_REQUEST,
        8601,
    )
)
"""The only numbers kept: Heap's documented limits (`longer than 1023 characters`) and ISO 8601.
Any other number could be a value, so it is dropped."""

VOCABULARY: dict[str, str] = {
    word.lower(): word
    for word in (*HEAP_FIELD_WORDS.split(), *RULE_WORDS.split(), *SANDBOX_WORDS.split())
}
VOCABULARY.update({number: number for number in LIMIT_NUMBERS})
"""Lowercase word -> the spelling shown. A description never copies Heap's own spelling."""

MAX_DESCRIPTION_WORDS = 20
"""Bounds the length of a log line and the variety of descriptions (they are summary keys)."""

MAX_EXAMINED_CHARACTERS = 8192
"""Only the start of a long answer is read: an explanation comes first, echoed items after."""

CUT_MARK = "..."
NOTHING_SAFE_TO_SHOW = "no explanation that can be shown safely"

_TOKEN = re.compile(r"\w+")
"""Word characters in any script: `café` is one token (not in the vocabulary), not `caf`."""


def sanitise(text: str) -> str:
    """The words of `text` that are in the vocabulary, in order, repeats collapsed, bounded.

    The result is built only from `VOCABULARY` values, single spaces and `CUT_MARK`, or is
    `NOTHING_SAFE_TO_SHOW`; no character of `text` is ever copied into it.
    """
    words = _vocabulary_words(text[:MAX_EXAMINED_CHARACTERS])
    if not words:
        return NOTHING_SAFE_TO_SHOW
    if len(words) > MAX_DESCRIPTION_WORDS:
        return " ".join(words[:MAX_DESCRIPTION_WORDS]) + " " + CUT_MARK
    return " ".join(words)


def _vocabulary_words(text: str) -> list[str]:
    """Known tokens in their vocabulary spelling; a token equal to the previous one is skipped."""
    words: list[str] = []
    for token in _TOKEN.findall(text):
        word = VOCABULARY.get(token.lower())
        if word is not None and (not words or words[-1] != word):
            words.append(word)
    return words
