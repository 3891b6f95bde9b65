"""Agents shared by the HTTP and WebSocket tests of the OpenAI Agents SDK."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from agents import (
    Agent,
    FunctionToolResult,
    ModelSettings,
    RunContextWrapper,
    ToolsToFinalOutputResult,
    function_tool,
    set_default_openai_api,
    set_default_openai_client,
    set_default_openai_responses_transport,
    set_tracing_disabled,
)

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer


def use_server(server: TetherServer, transport: Literal["http", "websocket"]) -> Iterator[None]:
    """Point the SDK's defaults at `server` for one test, then back to HTTP."""
    set_tracing_disabled(True)  # traces would go to api.openai.com
    set_default_openai_client(server.async_client(), use_for_tracing=False)
    set_default_openai_api("responses")
    set_default_openai_responses_transport(transport)
    yield
    set_default_openai_responses_transport("http")


def counting_agent(calls: list[int], stop_after: int) -> Agent[Any]:
    """Calls `add` (tool_choice required) until it has been called `stop_after` times."""

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


def weather_agent(seen: list[str]) -> Agent[Any]:
    """Has one tool and the default tool_choice: the scripted model calls it once, then reports."""

    @function_tool
    def lookup(city: str) -> str:
        """Look a city's weather up."""
        seen.append(city)
        return f"sunny in {city}"

    return Agent(name="weather", instructions="Use tools.", model=SCRIPTED, tools=[lookup])
