"""The scripted model's tokenizer and schema-satisfying arguments."""

from __future__ import annotations

from typing import Any

import pytest

from tether.backends.scripted import count_tokens, example_value


def test_a_token_is_four_utf8_bytes_rounded_up() -> None:
    assert [count_tokens(t) for t in ("", "a", "abcd", "abcde", "é" * 2)] == [0, 1, 1, 2, 1]


@pytest.mark.parametrize(
    ("schema", "check"),
    [
        ({"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}, lambda v: v == {"n": 3}),
        ({"type": "string", "enum": ["red", "blue"]}, lambda v: v == "red"),
        ({"type": "array", "items": {"type": "boolean"}, "minItems": 2}, lambda v: v == [True, True]),
        ({"type": ["null", "number"]}, lambda v: isinstance(v, int | float)),
        ({"anyOf": [{"type": "string", "minLength": 10}, {"type": "integer"}]}, lambda v: len(v) >= 10),
        ({"properties": {"a": {"const": 5}}}, lambda v: v == {"a": 5}),
    ],
)
def test_example_values_satisfy_their_schema(schema: dict[str, Any], check: Any) -> None:
    assert check(example_value(schema))
