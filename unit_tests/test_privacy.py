"""redact: values of the item quoted back in Heap's messages are blanked out before logging."""

from __future__ import annotations

from destination_heap_analytics.privacy import REDACTED, redact


def test_string_value_in_message_is_replaced():
    item = {"identity": "alice@example.com", "event": "signup"}

    message = redact("invalid identity alice@example.com", item)

    assert message == f"invalid identity {REDACTED}"


def test_every_occurrence_is_replaced():
    item = {"identity": "alice@example.com"}

    message = redact("alice@example.com vs alice@example.com", item)

    assert message == f"{REDACTED} vs {REDACTED}"


def test_nested_property_values_are_replaced():
    item = {
        "identity": "u-1",
        "properties": {"address": {"street": "Baker Street"}, "tags": ["vip-gold", "beta"]},
    }

    message = redact("bad street Baker Street, tag vip-gold", item)

    assert message == f"bad street {REDACTED}, tag {REDACTED}"
    assert "Baker" not in message


def test_numeric_values_are_replaced():
    item = {"identity": "u1", "properties": {"amount": 12345, "ratio": 0.875}}

    message = redact("amount 12345 exceeds; ratio 0.875", item)

    assert message == f"amount {REDACTED} exceeds; ratio {REDACTED}"


def test_longest_value_is_replaced_first():
    item = {"properties": {"short": "secret", "long": "topsecretvalue"}}

    message = redact("value topsecretvalue rejected", item)

    # Replacing "secret" first would leave "top<redacted>value" behind.
    assert message == f"value {REDACTED} rejected"


def test_short_values_are_left_alone():
    item = {"properties": {"a": "ab", "n": 12, "x": "e"}}
    original = "field ab has 12 problems in e"

    assert redact(original, item) == original


def test_three_character_values_are_replaced():
    item = {"properties": {"code": "xyz"}}

    assert redact("code xyz unknown", item) == f"code {REDACTED} unknown"


def test_booleans_are_left_alone():
    item = {"properties": {"flag": True, "other": False}}
    original = "flag True is not allowed, nor False"

    assert redact(original, item) == original


def test_none_values_are_left_alone():
    item = {"properties": {"empty": None}}
    original = "None of the fields was empty"

    assert redact(original, item) == original


def test_message_without_item_values_is_unchanged():
    item = {"identity": "alice@example.com", "properties": {"plan": "enterprise", "seats": 250}}
    original = "properties must be an object"

    assert redact(original, item) == original
