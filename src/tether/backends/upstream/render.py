"""Render a `Generation` as a Chat Completions request body, byte-stable for the engine's cache.

Engines with a prefix cache (vLLM's hashed 16-token blocks, SGLang's radix tree, llama.cpp's
last prompt) hit only when the prompt they render starts with exactly the tokens of an earlier
one. So the body is a pure function of the conversation:

- the keys are always in the same order, with `tools` before `messages` and everything that may
  change from turn to turn (`tool_choice`, sampling, limits) after them: a continuation's body
  starts with the previous body's bytes up to the end of its last message;
- each item always renders to the same message, whatever came after it, so the messages of a
  continuation are the previous messages plus new ones;
- tools are listed as the client offered them, whatever `tool_choice` allows (an agent that
  flips between `required` and `auto` keeps one tool block), with the client's key order;
- nothing per request (ids, timestamps) goes in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from tether.backends.base import Generation
from tether.protocol.items import (
    AttachmentPart,
    Compaction,
    ContentPart,
    FunctionCall,
    FunctionCallOutput,
    Item,
    ItemReference,
    Message,
    OpaqueItem,
    Reasoning,
    TextPart,
)
from tether.protocol.tools import FunctionTool, ToolChoice

Json = dict[str, Any]
BYTES_PER_TOKEN = 4  # for estimates only: Chat Completions has no endpoint that counts


def chat_request(
    generation: Generation, model: str, session_key: str, *, stream: bool, cache_salt: str | None = None
) -> Json:
    """The body for `generation`; `max_tokens` 1 and no stream is a warm-up (D2). `cache_salt`
    separates the engine's prefix cache (vLLM's field of that name) for each tenant."""
    body: Json = {"model": model}
    if generation.tools:
        body["tools"] = [_tool(tool) for tool in generation.tools]
    body["messages"] = messages(generation)
    if generation.tools:
        body["tool_choice"] = _tool_choice(generation.tool_choice, generation.tools)
        body["parallel_tool_calls"] = generation.parallel_tool_calls
    if generation.max_output_tokens is not None:
        body["max_tokens"] = generation.max_output_tokens
    body["temperature"] = generation.temperature
    body["top_p"] = generation.top_p
    # Routers that keep a session on one replica read `user` when no header names it.
    body["user"] = session_key
    if cache_salt is not None:
        body["cache_salt"] = cache_salt
    body["stream"] = stream
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def encode(body: Json) -> bytes:
    return orjson.dumps(body)


def estimate_tokens(body: bytes) -> int:
    """What the prompt of an encoded request costs, roughly: its bytes at 4 bytes a token (the
    tools and messages are nearly all of them)."""
    return math.ceil(len(body) / BYTES_PER_TOKEN)


def messages(generation: Generation) -> list[Json]:
    rendered = [{"role": "system", "content": generation.instructions}] if generation.instructions else []
    rendered.extend(_messages(generation.items))
    return rendered


def _messages(items: Iterable[Item]) -> Iterator[Json]:
    """One message per item, except that an assistant's text and the calls right after it form
    one assistant message, as engines' chat templates expect a turn with tool calls to look, and
    that thinking goes on the assistant message after it."""
    assistant: Json | None = None
    thinking: str | None = None
    for item in items:
        if isinstance(item, FunctionCall):
            if assistant is None:
                # Not null: some engines (llama-cpp-python) require a string here.
                assistant = _assistant("", thinking)
                thinking = None
            assistant.setdefault("tool_calls", []).append(_tool_call(item))
            continue
        if assistant is not None:
            yield assistant
            assistant = None
        if isinstance(item, Reasoning):
            thinking = item.text or None
            continue
        if isinstance(item, Message) and item.role == "assistant":
            assistant = _assistant(item.text, thinking)
        elif isinstance(item, Message):
            # Chat templates know `system`; most engines reject or misplace `developer`.
            role = "system" if item.role == "developer" else item.role
            yield {"role": role, "content": _content(item.content)}
        elif isinstance(item, FunctionCallOutput):
            yield {"role": "tool", "tool_call_id": item.call_id, "content": item.text}
        elif isinstance(item, ItemReference | Compaction):
            raise TypeError(f"{type(item).__name__} must be resolved before it reaches a backend")
        elif not isinstance(item, OpaqueItem):  # hosted-tool records are not shown
            raise TypeError(f"cannot render {type(item).__name__}")
        thinking = None  # thinking belongs to the assistant message right after it, or to none
    if assistant is not None:
        yield assistant


def _assistant(text: str, thinking: str | None) -> Json:
    """An assistant message, with the thinking before it under both names engines read it by:
    `reasoning_content` (llama.cpp's server, SGLang, DeepSeek's API) and `reasoning` (vLLM,
    Ollama). A chat template that keeps the thinking of the turn in progress (Qwen3's, gpt-oss')
    then renders the tokens the engine generated, and its prefix cache holds."""
    if thinking is None:
        return {"role": "assistant", "content": text}
    return {"role": "assistant", "content": text, "reasoning_content": thinking, "reasoning": thinking}


def _content(parts: tuple[ContentPart, ...]) -> str | list[Json]:
    """Plain text when the message is only text (every engine takes it); parts when it has images."""
    if not any(_image_url(part) for part in parts):
        return "".join(p.text if isinstance(p, TextPart) else p.placeholder for p in parts)
    return [_part(part) for part in parts]


def _part(part: ContentPart) -> Json:
    url = _image_url(part)
    if url is None:
        text = part.text if isinstance(part, TextPart) else part.placeholder
        return {"type": "text", "text": text}
    image: Json = {"url": url}
    detail = dict(part.fields).get("detail") if isinstance(part, AttachmentPart) else None
    if detail is not None:
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def _image_url(part: ContentPart) -> str | None:
    if isinstance(part, AttachmentPart) and part.type == "input_image":
        url = dict(part.fields).get("image_url")
        return url if isinstance(url, str) else None
    return None


def _tool_call(call: FunctionCall) -> Json:
    return {
        "id": call.call_id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _tool(tool: FunctionTool) -> Json:
    function: Json = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    function["parameters"] = dict(tool.parameters)
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _tool_choice(choice: ToolChoice, tools: tuple[FunctionTool, ...]) -> str | Json:
    allowed = choice.allowed(tools)
    if choice.mode == "required" and len(allowed) == 1:
        # Named, even when `required` says it: one choice is that tool, and some engines
        # (llama-cpp-python) force only a named function.
        return {"type": "function", "function": {"name": allowed[0].name}}
    # A narrower `allowed_tools` set has no Chat Completions form that engines accept; the engine
    # gets the mode, and the tool list stays whole so the cached prefix does too.
    return choice.mode
