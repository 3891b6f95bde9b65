"""The OpenAI Agents SDK over its WebSocket transport (clients.md §2)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from agents import Runner, responses_websocket_session, set_tracing_disabled

from tests.agents_support import counting_agent, use_server, weather_agent
from tests.server_process import TetherServer


@pytest.fixture
def agents_over_websocket(scripted_server: TetherServer) -> Iterator[None]:
    yield from use_server(scripted_server, "websocket")


def test_a_multi_tool_run_with_auto_previous_response_id(agents_over_websocket: None) -> None:
    """Incremental mode: each frame carries previous_response_id and only the new output."""
    calls: list[int] = []
    result = asyncio.run(
        Runner.run(counting_agent(calls, 4), "Add numbers.", max_turns=8, auto_previous_response_id=True)
    )
    assert result.final_output == "4 sums" and len(calls) == 4
    cached = [r.usage.input_tokens_details.cached_tokens for r in result.raw_responses]
    assert cached[0] == 0 and all(c > 0 for c in cached[1:])  # chained on the socket's cache


def test_responses_websocket_session_shares_one_socket(scripted_server: TetherServer) -> None:
    set_tracing_disabled(True)
    seen: list[str] = []

    async def main() -> tuple[Any, Any]:
        async with responses_websocket_session(api_key="unused", base_url=scripted_server.base_url) as ws:
            first = await ws.run(weather_agent(seen), "Weather in Oslo?")
            second = await ws.run(
                weather_agent(seen), "And Rome?", previous_response_id=first.last_response_id
            )
            return first, second

    first, second = asyncio.run(main())
    assert [r.output[0].type for r in first.raw_responses] == ["function_call", "message"]
    assert second.final_output and len(seen) == 2
    # The second run continued the first on the same socket: its whole context was cached.
    assert second.raw_responses[0].usage.input_tokens_details.cached_tokens > 0
