"""Read a Chat Completions stream: server-sent `data:` lines in, model events out (no I/O).

Engines differ in the details, and the decoder takes all of these forms:
- a tool call's `id` and `name` come in its first delta (OpenAI, vLLM) or in every delta
  (llama-cpp-python): a call starts when a new `index` appears, never on a repeated name;
- usage comes in a last chunk without choices when `stream_options.include_usage` is honoured,
  and not at all otherwise (llama-cpp-python): then the prompt is estimated and each content or
  argument delta counts as one output token;
- an error can arrive as a chunk with an `error` object after the stream has started.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import orjson

from tether.backends.base import (
    BackendError,
    Finished,
    ModelEvent,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStarted,
)
from tether.protocol.response import Usage

Json = Mapping[str, Any]
DONE = object()  # the `data: [DONE]` line
UNFINISHED = "The upstream engine ended its stream without finishing the response."
_FINISH_REASONS: dict[str, Literal["stop", "length", "content_filter"]] = {
    "length": "length",
    "content_filter": "content_filter",
}


class EndedEarly(BackendError):
    """The engine's stream stopped before the response was finished: it closed the stream without
    a finish reason, or dropped the connection. Before anything of it reached the client the
    request is worth one more try (see `UpstreamBackend.generate`)."""


def parse_line(line: str) -> Json | object | None:
    """One line of the event stream: a chunk, `DONE`, or None for framing (blank, comment, `event:`)."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return DONE
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise BackendError(f"upstream sent a line that is not JSON: {data[:200]!r}") from None
    if not isinstance(chunk, Mapping):
        raise BackendError(f"upstream sent a chunk that is not an object: {data[:200]!r}")
    return chunk


class ChunkDecoder:
    def __init__(self) -> None:
        self.finish_reason: str | None = None
        self.usage: Json | None = None
        self.deltas = 0  # content and argument deltas: output tokens when usage is missing
        self.events = 0  # model events made of the chunks so far
        self._calls_started: list[int] = []

    def feed(self, chunk: Json) -> Iterator[ModelEvent]:
        error = chunk.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, Mapping) else str(error)
            raise BackendError(
                f"upstream error mid-stream: {message}", public=f"The upstream engine failed: {message}"
            )
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # Tether asks for one choice
            for event in self._delta(choice.get("delta") or {}):
                self.events += 1
                yield event
            self.finish_reason = choice.get("finish_reason") or self.finish_reason

    def finish(self, estimated_input_tokens: int) -> Finished:
        """The stream's end; one that never gave a finish reason was cut short by the engine
        (llama-cpp-python ends a stream this way when the prompt does not fit its context)."""
        if self.finish_reason is None:
            raise EndedEarly("upstream stream ended without a finish reason", public=UNFINISHED)
        reason = _FINISH_REASONS.get(self.finish_reason, "stop")
        return Finished(reason, usage_of(self.usage, estimated_input_tokens, self.deltas))

    @property
    def calling(self) -> bool:
        """A tool call has started: the answer goes on to its end (calls close only there)."""
        return bool(self._calls_started)

    def steered(self, estimated_input_tokens: int) -> Finished:
        """The end of a stream closed early for a steer: the engine reports usage only at its own
        end, so what it would have said is estimated."""
        return Finished("steered", usage_of(self.usage, estimated_input_tokens, self.deltas))

    def _delta(self, delta: Json) -> Iterator[ModelEvent]:
        # The thinking of a reasoning model, as vLLM's and SGLang's reasoning parsers send it
        # (`reasoning_content`; `reasoning` in newer vLLM).
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            self.deltas += 1
            yield ReasoningDelta(reasoning)
        content = delta.get("content")
        if content:
            self.deltas += 1
            yield TextDelta(content)
        for call in delta.get("tool_calls") or ():
            yield from self._call_delta(call)

    def _call_delta(self, call: Json) -> Iterator[ModelEvent]:
        index = call.get("index", 0)
        function = call.get("function") or {}
        if not self._calls_started or self._calls_started[-1] != index:
            if index in self._calls_started:
                raise BackendError(f"upstream interleaved the deltas of tool calls {self._calls_started}")
            name = function.get("name")
            if not name:
                raise BackendError(f"upstream started tool call {index} without a name")
            self._calls_started.append(index)
            yield ToolCallStarted(name)
        arguments = function.get("arguments")
        if arguments:
            self.deltas += 1
            yield ToolCallDelta(arguments)


def usage_of(usage: Json | None, estimated_input_tokens: int, counted_output_tokens: int) -> Usage:
    """The engine's usage (with its prefix-cache hits) when it reported one, else our estimate.
    Engines do not report what they wrote to their prefix cache: what they prefilled is taken
    for it (vLLM, SGLang and llama.cpp keep the prompt's blocks once computed)."""
    if not usage:
        return Usage(estimated_input_tokens, 0, counted_output_tokens, estimated_input_tokens)
    details = usage.get("prompt_tokens_details") or {}
    prompt, cached = int(usage.get("prompt_tokens") or 0), int(details.get("cached_tokens") or 0)
    return Usage(prompt, cached, int(usage.get("completion_tokens") or 0), prompt - cached)
