"""Calls the local model writes of its own accord (`tool_choice: "auto"`), with the official SDK:
shown earlier calls of the same kind, SmolLM2 writes one, which streams as a `function_call`
and is answered like any other."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import LOCAL
from tests.integration.test_http_create import WEATHER_TOOL
from tests.sdk_shapes import unknown_keys
from tests.server_process import TetherServer

pytestmark = pytest.mark.local_model


def shown(number: int, city: str, days: int, weather: str) -> list[dict[str, Any]]:
    """One exchange that shows the model how a call looks."""
    call_id = f"call_shown_{number}"
    return [
        {"role": "user", "content": f"What is the weather in {city} for {days} days?"},
        {"type": "function_call", "call_id": call_id, "name": "get_weather",
         "arguments": json.dumps({"city": city, "days": days})},
        {"type": "function_call_output", "call_id": call_id, "output": weather},
        {"role": "assistant", "content": f"It is {weather.lower()} in {city}."},
    ]  # fmt: skip


# Three such exchanges (with one or two, the 135M model imitates the tool's output instead), then
# a question of the same kind.
SHOWN = [*shown(1, "Paris", 2, "Sunny"), *shown(2, "Oslo", 1, "Cold"), *shown(3, "Lima", 4, "Warm"),
         {"role": "user", "content": "What is the weather in Rome for 3 days?"}]  # fmt: skip


def test_a_call_the_model_writes_streams_as_a_function_call(local_server: TetherServer) -> None:
    with local_server.client().responses.connect() as conn:
        conn.response.create(model=LOCAL, input=SHOWN, tools=[WEATHER_TOOL], temperature=0,  # type: ignore[list-item]
                             max_output_tokens=60, store=False)  # fmt: skip
        events = []
        for event in conn:
            events.append(event)
            assert not unknown_keys(event.to_dict()), event
            if event.type in ("response.completed", "response.incomplete"):
                break
        first = events[-1].response
        calls = [item for item in first.output if item.type == "function_call"]
        assert calls, first.output
        assert calls[0].name == "get_weather" and json.loads(calls[0].arguments)["city"] == "Rome"
        deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
        assert "".join(deltas) == calls[0].arguments and len(deltas) > 1  # streamed as written
        answers = [
            {"type": "function_call_output", "call_id": c.call_id, "output": "Rain, 15 C."} for c in calls
        ]
        conn.response.create(model=LOCAL, input=answers, previous_response_id=first.id, tools=[WEATHER_TOOL],  # type: ignore[list-item]
                             temperature=0, max_output_tokens=16, store=False)  # fmt: skip
        then = next(e for e in conn if e.type in ("response.completed", "response.incomplete")).response
    assert then.usage is not None and first.usage is not None
    assert then.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens
