"""A Llama 3.1-style template on the local engine: a call is the JSON object
`{"name": ..., "parameters": ...}` alone in the model's turn, forced by a grammar in that form,
and answered in an `ipython` turn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import LOCAL
from tests.integration.test_http_create import WEATHER_TOOL
from tests.server_process import TetherServer

pytestmark = pytest.mark.local_model

LLAMA3 = Path(__file__).parents[1] / "data/llama3.jinja"


def test_a_forced_call_in_llama_3_s_form_and_its_result(tmp_path: Path) -> None:
    with TetherServer(tmp_path / "tether.db", "--chat-template", str(LLAMA3), model="local") as server:
        [model] = server.client().models.list().data
        assert model.tool_format == "llama3_json"  # type: ignore[attr-defined]
        with server.client().responses.connect() as conn:
            conn.response.create(model=LOCAL, input="Weather in Paris for 2 days?", tools=[WEATHER_TOOL],  # type: ignore[list-item]
                                 tool_choice={"type": "function", "name": "get_weather"}, temperature=0,
                                 max_output_tokens=60, store=False)  # fmt: skip
            first = next(e for e in conn if e.type in ("response.completed", "response.incomplete")).response
            assert first.status == "completed"  # the call is the whole answer, and then it ends
            [call] = first.output
            assert call.type == "function_call" and isinstance(json.loads(call.arguments)["city"], str)
            output = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny."}
            conn.response.create(model=LOCAL, input=[output], previous_response_id=first.id,
                                 tools=[WEATHER_TOOL], temperature=0, max_output_tokens=16,  # type: ignore[list-item]
                                 store=False)  # fmt: skip
            then = next(e for e in conn if e.type in ("response.completed", "response.incomplete")).response
    assert then.usage is not None and first.usage is not None
    # All of the first prompt but its last token: the template writes the turn's opening joined
    # to the call that follows it, and "\n\n{" tokenizes otherwise than "\n\n" did.
    assert then.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens - 1
