"""Parsing `response.create` bodies (§4.1.1, §4.2, §6.6): defaults, leniency, precise errors."""

from __future__ import annotations

from typing import Any

import pytest

from tether.protocol.errors import ApiError
from tether.protocol.items import FunctionCall, FunctionCallOutput, Message, OpaqueItem, Reasoning, TextPart
from tether.protocol.request import parse_create


def rejection(body: dict[str, Any], transport: str = "http") -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_create(body, transport)  # type: ignore[arg-type]
    return caught.value


def test_defaults_match_what_openai_echoes() -> None:
    request = parse_create({"model": "m"}, "http")
    assert request.store is True and request.stream is False and request.background is False
    assert request.temperature == 1.0 and request.top_p == 1.0 and request.truncation == "disabled"
    assert request.tool_choice.mode == "auto" and request.tool_choice_echo == "auto"
    assert request.text == {"format": {"type": "text"}, "verbosity": "medium"}
    assert request.service_tier == "default"


def test_a_string_input_is_one_user_message() -> None:
    request = parse_create({"model": "m", "input": "hi"}, "http")
    assert request.input == (Message("user", (TextPart("input_text", "hi"),)),)


def test_lenient_items_from_real_clients() -> None:
    """clients.md §8: ids and status on replayed calls, phase, unknown keys, easy messages."""
    request = parse_create(
        {"model": "m", "input": [
            {"role": "assistant", "content": "done", "phase": "final_answer", "id": "msg_a"},
            {"type": "function_call", "id": "fc_1", "status": "completed", "call_id": "c",
             "name": "f", "arguments": "{}", "namespace": "ns"},
            {"type": "function_call_output", "call_id": "c", "output": "ok", "id": "fco_1"},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "x", "prompt_cache_breakpoint": True}]},
            {"type": "reasoning", "summary": [], "encrypted_content": "opaque"},
            {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        ]},
        "ws",
    )  # fmt: skip
    kinds = [type(item) for item in request.input]
    assert kinds == [Message, FunctionCall, FunctionCallOutput, Message, Reasoning, OpaqueItem]
    assert request.input[0].phase == "final_answer"  # type: ignore[union-attr]
    assert request.input[3].breakpoint  # type: ignore[union-attr]  # `true`: a breakpoint, leniently


def test_ws_accepts_stream_and_warmups_and_refuses_background() -> None:
    """D2, D3."""
    assert parse_create({"model": "m", "stream": False}, "ws").stream is True
    assert parse_create({"model": "m", "generate": False}, "ws").generate is False
    prewarm = parse_create({"model": "m", "prompt_cache_options": {"prewarm": True}}, "ws")
    assert prewarm.generate is False
    assert rejection({"model": "m", "background": True}, "ws").param == "background"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f"}]}, "input"),
        ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input"),
        ({"model": "m", "tools": "all"}, "tools"),
        ({"model": "m", "tools": [{"type": "function", "name": "f"}] * 2}, "tools"),
        ({"model": "m", "tool_choice": "sometimes"}, "tool_choice"),
        (
            {
                "model": "m",
                "tool_choice": {
                    "type": "allowed_tools",
                    "mode": "auto",
                    "tools": [{"type": "function", "name": "x"}],
                },
            },
            "tool_choice",
        ),
        ({"model": "m", "top_logprobs": 21}, "top_logprobs"),
        ({"model": "m", "previous_response_id": "r", "conversation": "c"}, "previous_response_id"),
        ({"model": "m", "metadata": {"k" * 65: "v"}}, "metadata"),
        ({"model": 7}, "model"),
    ],
)
def test_errors_name_the_offending_param(body: dict[str, Any], param: str) -> None:
    error = rejection(body)
    assert (error.status, error.code, error.param) == (400, "invalid_request_error", param)


def test_error_messages_point_at_the_path() -> None:
    error = rejection({"model": "m", "input": [{"role": "user", "content": "x"}, {"type": "function_call"}]})
    assert error.message == "Invalid 'input[1].call_id': missing."


def test_allowed_tools_narrow_the_choice() -> None:
    tools = [{"type": "function", "name": n} for n in ("a", "b", "c")]
    choice = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "b"}]}
    request = parse_create({"model": "m", "tools": tools, "tool_choice": choice}, "http")
    assert request.tool_choice.mode == "required"
    assert [t.name for t in request.tool_choice.allowed(request.tools)] == ["b"]


def test_metadata_limits_are_tested_at_the_boundary() -> None:
    at_limit = {f"k{i}": "v" * 512 for i in range(16)}
    assert parse_create({"model": "m", "metadata": at_limit}, "http").metadata == at_limit
    assert rejection({"model": "m", "metadata": {**at_limit, "k16": "v"}}).param == "metadata"
