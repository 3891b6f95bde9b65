"""The OpenAI Agents SDK over its WebSocket transport (clients.md §2)."""

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
    responses_websocket_session,
    set_default_openai_api,
    set_default_openai_client,
    set_default_openai_responses_transport,
    set_tracing_disabled,
)

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer


@pytest.fixture
def agents_over_websocket(scripted_server: TetherServer) -> Iterator[None]:
    set_tracing_disabled(True)
    set_default_openai_client(scripted_server.async_client(), use_for_tracing=False)
    set_default_openai_api("responses")
    set_default_openai_responses_transport("websocket")
    yield
    set_default_openai_responses_transport("http")


def counting_agent(calls: list[int], stop_after: int) -> Agent[Any]:
    @function_tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        calls.append(a + b)
        return a + b

    def stop(context: RunContextWrapper[Any], results: list[FunctionToolResult]) -> ToolsToFinalOutputResult:
        return ToolsToFinalOutputResult(
            is_final_output=len(calls) >= stop_after, final_output=f"{len(calls)} sums"
        )

    return Agent(
        name="calc", instructions="Always use the add tool.", model=SCRIPTED, tools=[add],
        model_settings=ModelSettings(tool_choice="required"), reset_tool_choice=False,
        tool_use_behavior=stop,
    )  # fmt: skip


def test_a_multi_tool_run_with_auto_previous_response_id(agents_over_websocket: None) -> None:
    """Incremental mode: each frame carries previous_response_id and only the new output."""
    calls: list[int] = []
    result = asyncio.run(
        Runner.run(counting_agent(calls, 4), "Add numbers.", max_turns=8, auto_previous_response_id=True)
    )
    assert result.final_output == "4 sums" and len(calls) == 4
    responses = result.raw_responses
    cached = [r.usage.input_tokens_details.cached_tokens for r in responses]
    assert cached[0] == 0 and all(c > 0 for c in cached[1:])  # chained on the socket's cache


def test_responses_websocket_session_shares_one_socket(scripted_server: TetherServer) -> None:
    set_tracing_disabled(True)

    async def main() -> tuple[Any, Any]:
        async with responses_websocket_session(api_key="unused", base_url=scripted_server.base_url) as ws:
            weather = Agent(name="w", instructions="Use tools.", model=SCRIPTED, tools=[_lookup()])
            first = await ws.run(weather, "Weather in Oslo?")
            second = await ws.run(weather, "And Rome?", previous_response_id=first.last_response_id)
            return first, second

    first, second = asyncio.run(main())
    assert [r.output[0].type for r in first.raw_responses] == ["function_call", "message"]
    assert second.final_output
    # The second run continued the first on the same socket: its whole context was cached.
    assert second.raw_responses[0].usage.input_tokens_details.cached_tokens > 0


def _lookup() -> Any:
    @function_tool
    def lookup(city: str) -> str:
        """Look a city's weather up."""
        return f"sunny in {city}"

    return lookup
