"""The scripted model's decision rules (README "Models"), through the official SDK over HTTP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import SCRIPTED
from tests.integration.test_http_create import WEATHER_TOOL
from tests.server_process import TetherServer

TIME_TOOL = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}


def output_types(response: object) -> list[str]:
    return [item.type for item in response.output]  # type: ignore[attr-defined]


def test_rule_1_no_callable_tool_means_text(client: openai.OpenAI) -> None:
    assert output_types(client.responses.create(model=SCRIPTED, input="hi")) == ["message"]
    only_hosted = client.responses.create(model=SCRIPTED, input="hi", tools=[{"type": "web_search"}])
    assert output_types(only_hosted) == ["message"]
    none = client.responses.create(model=SCRIPTED, input="hi", tools=[WEATHER_TOOL], tool_choice="none")
    assert output_types(none) == ["message"]


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [("required", "get_weather"), ({"type": "function", "name": "get_time"}, "get_time")],
)
def test_rule_2_required_or_named_calls_that_tool(
    client: openai.OpenAI, tool_choice: object, expected: str
) -> None:
    response = client.responses.create(
        model=SCRIPTED,
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice=tool_choice,  # type: ignore[arg-type]
        input=[{"type": "function_call", "call_id": "call_x", "name": "get_time", "arguments": "{}"},
               {"type": "function_call_output", "call_id": "call_x", "output": "noon"}],
    )  # fmt: skip
    assert output_types(response) == ["function_call"]
    assert response.output[0].name == expected  # type: ignore[union-attr]


def test_rule_3_auto_calls_the_first_tool_for_a_user_message(client: openai.OpenAI) -> None:
    response = client.responses.create(model=SCRIPTED, input="Weather?", tools=[WEATHER_TOOL, TIME_TOOL])
    assert output_types(response) == ["function_call"]
    assert response.output[0].name == "get_weather"  # type: ignore[union-attr]


def test_rule_3_auto_answers_text_after_a_tool_output(client: openai.OpenAI) -> None:
    call = client.responses.create(model=SCRIPTED, input="Weather?", tools=[WEATHER_TOOL])
    report = client.responses.create(
        model=SCRIPTED,
        previous_response_id=call.id,
        tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": call.output[0].call_id, "output": "sun"}],  # type: ignore[union-attr]
    )
    assert output_types(report) == ["message"]


def test_a_custom_tool_s_input_is_what_the_message_quotes(client: openai.OpenAI) -> None:
    note = {"type": "custom", "name": "write_note", "description": "Write a note."}
    quoted = client.responses.create(
        model=SCRIPTED, tools=[note], input='Use write_note with ```\nline one\n"two"\n```, thanks.'
    )  # type: ignore[list-item]
    assert quoted.output[0].input == 'line one\n"two"\n'  # type: ignore[union-attr]
    plain = client.responses.create(model=SCRIPTED, tools=[note], input="Write a note.")  # type: ignore[list-item]
    assert plain.output[0].input == "example"  # type: ignore[union-attr]


def test_text_answers_are_deterministic(client: openai.OpenAI) -> None:
    one = client.responses.create(model=SCRIPTED, input="Same question.", max_output_tokens=7)
    two = client.responses.create(model=SCRIPTED, input="Same question.", max_output_tokens=7)
    other = client.responses.create(model=SCRIPTED, input="Other question.", max_output_tokens=7)
    assert one.output_text == two.output_text != other.output_text
    assert one.status == "completed" and one.usage is not None and one.usage.output_tokens == 7


def test_a_continuation_with_other_tools_reuses_only_the_common_prefix(client: openai.OpenAI) -> None:
    """Cache hits count like the local engine's: the tools come before the conversation, so new
    tools make the conversation after them new too."""

    def call(tool: dict[str, Any], **fields: Any) -> Any:
        return client.responses.create(model=SCRIPTED, tools=[tool], tool_choice="required", **fields)

    first = call(WEATHER_TOOL, input="Weather?")
    result = [{"type": "function_call_output", "call_id": first.output[0].call_id, "output": "sun"}]
    same = call(WEATHER_TOOL, input=result, previous_response_id=first.id)
    other = call(TIME_TOOL, input=result, previous_response_id=first.id)
    assert first.usage is not None and same.usage is not None and other.usage is not None
    assert same.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens
    assert other.usage.input_tokens_details.cached_tokens < 5  # "\ntool get_": where the tools part


def test_sub_millisecond_token_latencies_add_up(tmp_path: Path) -> None:
    """500 µs a token is below uvloop's timer resolution; an absolute schedule still makes 6,000
    tokens take 3 s, so a background response can be cancelled half-way."""
    with TetherServer(tmp_path / "t.db", "--scripted-decode-us", "500") as server:
        client = server.client()
        response = client.responses.create(model=SCRIPTED, input="x", max_output_tokens=6000, background=True)
        time.sleep(0.5)
        cancelled = client.responses.cancel(response.id)
    assert cancelled.status == "cancelled"
    assert cancelled.usage is not None and 0 < cancelled.usage.output_tokens < 6000
