"""The scripted model's tokenizer, schema-satisfying arguments and latency schedule."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvloop

from tether.backends.scripted import Schedule, count_tokens, example_value


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


def test_waits_below_the_timer_resolution_are_made_up_not_lost() -> None:
    """2,000 waits of 500 µs keep to their timetable: at least one second in all, on uvloop (the
    server's loop), whose timers count whole milliseconds."""

    async def wait_all() -> float:
        loop = asyncio.get_running_loop()
        schedule, start = Schedule(), loop.time()
        for _ in range(2000):
            await schedule.wait_us(500)
        return loop.time() - start

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(wait_all()) >= 1.0
