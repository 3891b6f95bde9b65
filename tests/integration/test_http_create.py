"""`POST /v1/responses` over a real socket with the official SDK: JSON, SSE, stream helper."""

from __future__ import annotations

import re

import httpx
import openai
import orjson

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer

# Spec §6.1: every one of these keys is always present.
RESPONSE_KEYS = {
    "id", "object", "created_at", "completed_at", "status", "error", "incomplete_details",
    "instructions", "model", "output", "parallel_tool_calls", "previous_response_id", "reasoning",
    "store", "temperature", "text", "tool_choice", "tools", "top_p", "truncation", "usage",
    "metadata", "background", "service_tier", "max_output_tokens", "max_tool_calls",
    "safety_identifier", "prompt_cache_key", "top_logprobs", "presence_penalty",
    "frequency_penalty", "user",
}  # fmt: skip

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
        "required": ["city", "days"],
        "additionalProperties": False,
    },
    "strict": True,
}


def test_json_create_returns_a_complete_response_object(client: openai.OpenAI) -> None:
    """§6.1 full key set, §6.3 usage arithmetic, §6.4 id prefixes, §10.1 x-request-id."""
    raw = client.responses.with_raw_response.create(model=SCRIPTED, input="Name a prime.")
    response = raw.parse()
    body = orjson.loads(raw.content)
    assert body.keys() >= RESPONSE_KEYS
    assert raw.headers["x-request-id"].startswith("req_")
    assert re.fullmatch(r"resp_[0-9a-f]{48}", response.id)
    assert response.status == "completed"
    assert response.output[0].id.startswith("msg_")
    assert response.output_text  # 16 scripted tokens of 4 bytes
    assert len(response.output_text.encode()) == 16 * 4
    usage = response.usage
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens == 16
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0
    assert body["completed_at"] is not None and body["store"] is True


def test_stream_events_follow_the_spec_order(client: openai.OpenAI) -> None:
    """§5.2 sequence numbers from 0; §5.4 message ordering; deltas concatenate to the text."""
    events = list(client.responses.create(model=SCRIPTED, input="Count to three.", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    final = events[-1].response
    assert "".join(deltas) == final.output_text
    assert events[0].response.status == "in_progress" and events[0].response.usage is None


def test_stream_helper_rebuilds_the_final_response(client: openai.OpenAI) -> None:
    with client.responses.stream(model=SCRIPTED, input="Say hi.") as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.status == "completed"
    assert final.output_text == "".join(texts)
    assert client.responses.retrieve(final.id).output_text == final.output_text


def test_sse_is_chosen_by_the_body_not_the_accept_header(scripted_server: TetherServer) -> None:
    """§10.2: the SDKs send Accept: application/json even when streaming."""
    reply = httpx.post(
        scripted_server.base_url + "/responses",
        json={"model": SCRIPTED, "input": "hi", "stream": True},
        headers={"accept": "application/json"},
    )
    assert reply.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in reply.text.split("\n\n") if b]
    first_event, first_data = blocks[0].split("\n")
    assert first_event == "event: response.created"
    assert orjson.loads(first_data.removeprefix("data: "))["type"] == "response.created"
    assert "[DONE]" not in reply.text


def test_max_output_tokens_sets_the_exact_length_of_a_scripted_answer(client: openai.OpenAI) -> None:
    response = client.responses.create(model=SCRIPTED, input="Talk.", max_output_tokens=5)
    assert response.status == "completed"
    assert response.usage is not None and response.usage.output_tokens == 5
    assert len(response.output_text.encode()) == 20


def test_max_output_tokens_cut_ends_incomplete(client: openai.OpenAI) -> None:
    """§7.5: a cut output ends `incomplete` / `max_output_tokens`, the open item closed first."""
    events = list(
        client.responses.create(
            model=SCRIPTED,
            input="Weather?",
            tools=[WEATHER_TOOL],
            tool_choice="required",
            max_output_tokens=2,
            stream=True,
        )
    )
    types = [e.type for e in events]
    assert types[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    final = events[-1].response
    assert final.status == "incomplete"
    assert final.incomplete_details is not None
    assert final.incomplete_details.reason == "max_output_tokens"
    assert final.output[0].status == "incomplete"
    assert final.usage is not None and final.usage.output_tokens == 2


def test_echoes_request_settings(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=SCRIPTED,
        input="hi",
        instructions="Be brief.",
        temperature=0.5,
        top_p=0.9,
        metadata={"run": "7"},
        user="u-1",
        tools=[WEATHER_TOOL, {"type": "web_search"}],
        tool_choice="none",
        parallel_tool_calls=False,
    )
    assert response.instructions == "Be brief."
    assert response.temperature == 0.5 and response.top_p == 0.9
    assert response.metadata == {"run": "7"}
    assert response.user == "u-1"
    assert response.tool_choice == "none" and response.parallel_tool_calls is False
    # D3: a tool type Tether cannot run is dropped from the echo.
    assert [t.name for t in response.tools] == ["get_weather"]  # type: ignore[union-attr]
