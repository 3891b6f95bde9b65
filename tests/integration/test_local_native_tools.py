"""A Hermes-style template (Qwen's family) on the local engine: the template itself writes the
tools, the calls and their results, and a call the grammar forces reads as the template writes
calls, so the next turn reuses it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LOCAL
from tests.integration.test_http_create import WEATHER_TOOL
from tests.server_process import TetherServer

pytestmark = pytest.mark.local_model

HERMES = Path(__file__).parents[1] / "data/hermes.jinja"


@pytest.fixture(scope="module")
def hermes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TetherServer]:
    folder = tmp_path_factory.mktemp("hermes")
    with TetherServer(folder / "tether.db", "--chat-template", str(HERMES), model="local") as server:
        yield server


def test_a_forced_call_and_its_result_through_the_template(hermes: TetherServer) -> None:
    [model] = hermes.client().models.list().data
    assert (model.prompt_format, model.tool_format) == ("chatml", "hermes")  # type: ignore[attr-defined]
    with hermes.client().responses.connect() as conn:
        conn.response.create(model=LOCAL, input="Weather in Paris for 2 days?", tools=[WEATHER_TOOL],  # type: ignore[list-item]
                             tool_choice={"type": "function", "name": "get_weather"}, temperature=0,
                             max_output_tokens=60, store=False)  # fmt: skip
        first = next(e for e in conn if e.type == "response.completed").response
        [call] = first.output
        assert call.type == "function_call" and isinstance(json.loads(call.arguments)["city"], str)
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny."}
        conn.response.create(model=LOCAL, input=[output], previous_response_id=first.id, tools=[WEATHER_TOOL],  # type: ignore[list-item]
                             temperature=0, max_output_tokens=16, store=False)  # fmt: skip
        then = next(e for e in conn if e.type in ("response.completed", "response.incomplete")).response
    assert then.usage is not None and first.usage is not None
    assert then.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens
