"""Reading Chat Completions streams as different engines write them."""

from __future__ import annotations

from typing import Any

import pytest

from tether.backends.base import (
    BackendError,
    Finished,
    ModelEvent,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStarted,
)
from tether.backends.upstream.chunks import DONE, ChunkDecoder, parse_line
from tether.protocol.response import Usage


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"object": "chat.completion.chunk", "choices": choices, **extra}


def decode(*chunks: dict[str, Any], estimate: int = 50) -> list[ModelEvent]:
    decoder = ChunkDecoder()
    events = [event for c in chunks for event in decoder.feed(c)]
    return [*events, decoder.finish(estimate)]


def test_framing_lines() -> None:
    assert parse_line("") is None and parse_line(": keep-alive") is None and parse_line("event: x") is None
    assert parse_line("data: [DONE]") is DONE
    assert parse_line('data: {"a": 1}') == {"a": 1}
    with pytest.raises(BackendError):
        parse_line("data: {not json")


def test_a_reasoning_parser_s_thinking_comes_before_the_answer() -> None:
    """vLLM's `reasoning_content` (`reasoning` in newer releases) is its own event, never text."""
    events = decode(
        chunk({"reasoning_content": "Rayleigh"}),
        chunk({"reasoning": " scattering."}),
        chunk({"content": "Blue light scatters most."}, finish="stop"),
    )
    assert events[:3] == [
        ReasoningDelta("Rayleigh"),
        ReasoningDelta(" scattering."),
        TextDelta("Blue light scatters most."),
    ]


def test_text_with_usage_and_cached_tokens() -> None:
    usage = {"prompt_tokens": 120, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 96}}
    events = decode(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}, finish="stop"),
        chunk(None, usage=usage),  # include_usage: a last chunk without choices
    )
    assert events == [
        TextDelta("Hel"),
        TextDelta("lo"),
        Finished("stop", Usage(120, 96, 2, 24)),
    ]  # prefilled: taken as written


def test_openai_style_tool_calls_name_only_in_the_first_delta() -> None:
    events = decode(
        chunk({"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"name": "get_time", "arguments": "{}"}}]}),
        chunk({}, finish="tool_calls"),
    )  # fmt: skip
    assert events[:-1] == [
        ToolCallStarted("get_weather"), ToolCallDelta('{"city":'), ToolCallDelta('"Paris"}'),
        ToolCallStarted("get_time"), ToolCallDelta("{}"),
    ]  # fmt: skip
    assert events[-1] == Finished("stop", Usage(50, 0, 3, 50))  # no usage reported: estimated and counted


def test_llama_cpp_style_tool_calls_repeat_the_name_in_every_delta() -> None:
    def delta(arguments: str) -> dict[str, Any]:
        call = {"index": 0, "id": "call__0", "type": "function",
                "function": {"name": "get_weather", "arguments": arguments}}  # fmt: skip
        return chunk({"content": None, "tool_calls": [call]})

    events = decode(
        delta('{"'), delta("city"), delta('": "Paris"}'), delta(""), chunk({}, finish="tool_calls")
    )
    assert events[:-1] == [ToolCallStarted("get_weather"), ToolCallDelta('{"'), ToolCallDelta("city"),
                           ToolCallDelta('": "Paris"}')]  # fmt: skip


def test_finish_reasons() -> None:
    assert decode(chunk({"content": "a"}, finish="length"))[-1].reason == "length"  # type: ignore[union-attr]
    assert decode(chunk({}, finish="content_filter"))[-1].reason == "content_filter"  # type: ignore[union-attr]
    assert decode(chunk({}, finish="eos"))[-1].reason == "stop"  # type: ignore[union-attr]


def test_a_stream_without_a_finish_reason_was_cut_short() -> None:
    with pytest.raises(BackendError) as cut:
        decode(chunk({"content": "a"}))
    assert cut.value.public is not None and "without finishing" in cut.value.public


def test_an_error_chunk_fails_with_the_engine_s_message() -> None:
    with pytest.raises(BackendError) as failed:
        decode(chunk({"content": "a"}), {"error": {"message": "out of KV blocks", "code": 503}})
    assert failed.value.public == "The upstream engine failed: out of KV blocks"


def test_interleaved_or_nameless_calls_are_refused() -> None:
    def call(index: int, name: str | None = "f") -> dict[str, Any]:
        return chunk({"tool_calls": [{"index": index, "function": {"name": name, "arguments": "{}"}}]})

    with pytest.raises(BackendError):
        decode(call(0), call(1), call(0, None))
    with pytest.raises(BackendError):
        decode(call(0, None))
