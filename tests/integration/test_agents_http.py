"""The OpenAI Agents SDK over HTTP (its SSE transport) against the scripted model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from agents import Runner

from tests.agents_support import counting_agent, use_server, weather_agent
from tests.server_process import TetherServer


@pytest.fixture
def agents_over_http(scripted_server: TetherServer) -> Iterator[None]:
    yield from use_server(scripted_server, "http")


def test_runner_completes_a_three_tool_call_loop(agents_over_http: None) -> None:
    calls: list[int] = []
    result = asyncio.run(Runner.run(counting_agent(calls, 3), "Add some numbers.", max_turns=6))
    assert result.final_output == "3 sums"
    assert len(calls) == 3 and all(isinstance(c, int) for c in calls)
    assert len(result.raw_responses) == 3


def test_runner_calls_a_tool_then_reports_under_auto(agents_over_http: None) -> None:
    """The scripted agent rule: a tool for the user's task, then text after its output."""
    seen: list[str] = []
    agent = weather_agent(seen)

    async def two_runs() -> None:
        result = await Runner.run(agent, "Weather in Oslo?", max_turns=4)
        assert len(seen) == 1
        assert isinstance(result.final_output, str) and result.final_output
        assert [r.output[0].type for r in result.raw_responses] == ["function_call", "message"]
        chained = await Runner.run(agent, "And in Rome?", previous_response_id=result.last_response_id)
        assert len(seen) == 2 and chained.final_output

    asyncio.run(two_runs())
