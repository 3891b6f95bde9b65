"""The embedded llama.cpp model served over HTTP, driven by the official SDK."""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import LOCAL
from tests.integration.test_http_create import WEATHER_TOOL
from tests.server_process import TetherServer

pytestmark = pytest.mark.local_model


@pytest.fixture
def local(local_server: TetherServer) -> openai.OpenAI:
    return local_server.client()


def test_the_local_model_answers_a_real_prompt(local: openai.OpenAI) -> None:
    response = local.responses.create(
        model=LOCAL, input="What is the capital of France?", temperature=0, max_output_tokens=40
    )
    assert response.output_text.strip()
    assert response.usage is not None and response.usage.output_tokens > 0
    assert response.status in ("completed", "incomplete")


def test_the_local_model_streams_and_the_deltas_add_up(local: openai.OpenAI) -> None:
    events = list(local.responses.create(model=LOCAL, input="Say hello.", max_output_tokens=12, stream=True))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas and deltas == events[-1].response.output_text
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_a_forced_function_call_is_valid_for_the_schema(local: openai.OpenAI) -> None:
    response = local.responses.create(
        model=LOCAL,
        input="What's the weather in Oslo for the next 3 days?",
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        temperature=0,
    )
    call = response.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    arguments = json.loads(call.arguments)
    assert isinstance(arguments["city"], str) and isinstance(arguments["days"], int)
    answer = local.responses.create(
        model=LOCAL,
        previous_response_id=response.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 4 C"}],
        max_output_tokens=30,
    )
    assert answer.output_text.strip()
    assert answer.usage is not None and answer.usage.input_tokens_details.cached_tokens > 0


def test_a_small_output_cap_ends_incomplete(local: openai.OpenAI) -> None:
    response = local.responses.create(model=LOCAL, input="Tell me a long story.", max_output_tokens=3)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 3
