"""The OpenAI Agents SDK over HTTP (its SSE transport) against the scripted model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from agents import (
    Agent,
    FunctionToolResult,
    ModelSettings,
    RunContextWrapper,
    Runner,
    ToolsToFinalOutputResult,
    function_tool,
    set_default_openai_api,
    set_default_openai_client,
    set_default_openai_responses_transport,
    set_tracing_disabled,
)

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer


@pytest.fixture
def agents_over_http(scripted_server: TetherServer) -> Iterator[None]:
    set_tracing_disabled(True)
    set_default_openai_client(scripted_server.async_client(), use_for_tracing=False)
    set_default_openai_api("responses")
    set_default_openai_responses_transport("http")
    yield


def test_runner_completes_a_three_tool_call_loop(agents_over_http: None) -> None:
    calls: list[dict[str, int]] = []

    @function_tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        calls.append({"a": a, "b": b})
        return a + b

    def stop_after_three(
        context: RunContextWrapper[Any], results: list[FunctionToolResult]
    ) -> ToolsToFinalOutputResult:
        done = len(calls) >= 3
        return ToolsToFinalOutputResult(is_final_output=done, final_output=f"{len(calls)} sums")

    agent = Agent(
        name="calc",
        instructions="Always use the add tool.",
        model=SCRIPTED,
        tools=[add],
        model_settings=ModelSettings(tool_choice="required"),
        reset_tool_choice=False,
        tool_use_behavior=stop_after_three,
    )
    result = asyncio.run(Runner.run(agent, "Add some numbers.", max_turns=6))
    assert result.final_output == "3 sums"
    assert len(calls) == 3 and all(isinstance(c["a"], int) for c in calls)
    assert len(result.raw_responses) == 3


def test_runner_calls_a_tool_then_reports_under_auto(agents_over_http: None) -> None:
    """The scripted agent rule: a tool for the user's task, then text after its output."""
    seen: list[str] = []

    @function_tool
    def lookup(city: str) -> str:
        """Look a city up."""
        seen.append(city)
        return "sunny"

    agent = Agent(name="weather", instructions="Use tools.", model=SCRIPTED, tools=[lookup])

    async def two_runs() -> None:
        result = await Runner.run(agent, "Weather in Oslo?", max_turns=4)
        assert len(seen) == 1
        assert isinstance(result.final_output, str) and result.final_output
        assert [r.output[0].type for r in result.raw_responses] == ["function_call", "message"]
        chained = await Runner.run(agent, "And in Rome?", previous_response_id=result.last_response_id)
        assert len(seen) == 2 and chained.final_output

    asyncio.run(two_runs())
