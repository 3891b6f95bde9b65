"""Chaining with `previous_response_id` from the store, and the function-calling loop (§8.3, §8.4)."""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import SCRIPTED
from tests.integration.test_http_create import WEATHER_TOOL


def test_a_ten_turn_chain_sees_its_history_and_reuses_the_cached_prefix(
    client: openai.OpenAI,
) -> None:
    previous = client.responses.create(model=SCRIPTED, input="Turn 0.", instructions="Be terse.")
    for turn in range(1, 10):
        response = client.responses.create(
            model=SCRIPTED, input=f"Turn {turn}.", previous_response_id=previous.id
        )
        assert response.previous_response_id == previous.id
        assert response.instructions is None  # §8.3: instructions are never inherited
        assert response.usage is not None and previous.usage is not None
        # The context holds every earlier input and output, so it only grows ...
        assert response.usage.input_tokens > previous.usage.input_tokens
        # ... and the part the parent already processed counts as cached, except after the first
        # turn: its instructions open the context, and the next turn's context opens without them.
        cached = response.usage.input_tokens_details.cached_tokens
        parent = previous.usage.input_tokens + previous.usage.output_tokens
        assert cached == 0 if turn == 1 else parent <= cached < response.usage.input_tokens
        previous = response
    items = client.responses.input_items.list(previous.id)
    assert [item.content[0].text for item in items.data] == ["Turn 9."]  # type: ignore[union-attr]


def test_store_false_is_never_kept(client: openai.OpenAI) -> None:
    response = client.responses.create(model=SCRIPTED, input="secret", store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=SCRIPTED, input="again", previous_response_id=response.id)
    assert caught.value.code == "previous_response_not_found"
    assert caught.value.param == "previous_response_id"


def test_tool_loop_with_function_call_output(client: openai.OpenAI) -> None:
    """§8.4: the call ends the response; the output comes back in the next turn."""
    call_turn = client.responses.create(
        model=SCRIPTED, input="Weather in Oslo?", tools=[WEATHER_TOOL], tool_choice="required"
    )
    call = call_turn.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.id.startswith("fc_") and call.call_id.startswith("call_")
    arguments = json.loads(call.arguments)
    assert isinstance(arguments["city"], str) and isinstance(arguments["days"], int)
    answer = client.responses.create(
        model=SCRIPTED,
        previous_response_id=call_turn.id,
        tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"sky":"clear"}'}],
    )
    assert answer.status == "completed" and answer.output[0].type == "message"
    stored_input = client.responses.input_items.list(answer.id).data
    assert stored_input[0].type == "function_call_output"
    assert stored_input[0].id.startswith("fco_")  # type: ignore[union-attr]


def test_unmatched_call_id_is_a_400_before_any_response(client: openai.OpenAI) -> None:
    """D10."""
    call_turn = client.responses.create(
        model=SCRIPTED, input="Weather?", tools=[WEATHER_TOOL], tool_choice="required"
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model=SCRIPTED,
            previous_response_id=call_turn.id,
            input=[{"type": "function_call_output", "call_id": "call_nope", "output": "x"}],
        )
    assert caught.value.code == "invalid_request_error"
    assert caught.value.param == "input"
    assert "call_nope" in caught.value.message
    # Nothing was lost: the parent can still be continued with the right call_id.
    fine = client.responses.create(
        model=SCRIPTED,
        previous_response_id=call_turn.id,
        input=[{"type": "function_call_output", "call_id": call_turn.output[0].call_id, "output": "ok"}],  # type: ignore[union-attr]
    )
    assert fine.status == "completed"


def test_full_history_replay_finds_the_call_in_the_same_input(client: openai.OpenAI) -> None:
    """§8.4.5: stateless clients replay the call (with id and status) and its output."""
    response = client.responses.create(
        model=SCRIPTED,
        store=False,
        tools=[WEATHER_TOOL],
        input=[
            {"role": "user", "content": "Weather?"},
            {
                "type": "function_call",
                "id": "fc_1",
                "status": "completed",
                "call_id": "call_a",
                "name": "get_weather",
                "arguments": '{"city":"Oslo","days":1}',
            },
            {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
        ],
    )
    assert response.output[0].type == "message"


def test_item_reference_resolves_a_stored_item(client: openai.OpenAI) -> None:
    first = client.responses.create(model=SCRIPTED, input="Remember this.")
    follow = client.responses.create(
        model=SCRIPTED,
        input=[
            {"type": "item_reference", "id": first.output[0].id},
            {"role": "user", "content": "And now?"},
        ],
    )
    assert follow.usage is not None and first.usage is not None
    assert follow.usage.input_tokens > first.usage.output_tokens
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=SCRIPTED, input=[{"type": "item_reference", "id": "msg_unknown"}])
    assert caught.value.param == "input"


def test_a_chain_continues_from_an_older_response(client: openai.OpenAI) -> None:
    """Branching: any stored response can be continued, not only the latest."""
    root = client.responses.create(model=SCRIPTED, input="root")
    client.responses.create(model=SCRIPTED, input="left", previous_response_id=root.id)
    right = client.responses.create(model=SCRIPTED, input="right", previous_response_id=root.id)
    assert right.previous_response_id == root.id and right.status == "completed"
