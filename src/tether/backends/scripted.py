"""A deterministic model with a latency profile, for tests and benchmarks.

Tokenizer: a text of B UTF-8 bytes is ceil(B / 4) tokens. The rendered context is the
instructions, each tool's name, description and JSON schema, then each item's role and text.

What it answers, in this order:
1. no function tool it may call, or `tool_choice: "none"` → text;
2. `tool_choice: "required"` or a named function → one `function_call` to that tool (or the
   first allowed tool), with arguments that satisfy the tool's JSON schema;
3. `tool_choice: "auto"` with function tools → a `function_call` when the last item of the
   context is a user message, else text: an agent calls a tool for a task, then reports once the
   tool's output is back. The tool called is the first whose name the user's latest messages
   (those after the model's last output: an agent may add context after the prompt) say (a
   namespaced tool's own name, without its namespace), else the first tool.

A custom tool's input is what those messages quote between ``` fences, when they quote something
(so a test can have a real client apply a real patch), else `example`.

A text answer is words of exactly four bytes, derived from the last user message, and exactly
`max_output_tokens` tokens long when that is set (ending `completed`: the answer is made to fit),
else 16. Function-call arguments are not shortened, so a small `max_output_tokens` cuts them and
the response ends `incomplete`.

Explicit caching (`prompt_cache_options.mode`) keeps only the context up to its last message
marked `prompt_cache_breakpoint`, and nothing without one.

A steer (`Cancellation.wrap_up`) stops a text answer before its next word, and never a call: the
call is finished, so where a steered response stops is exactly the words it had streamed.

Latency profile: `overhead_ms` once per response, `prefill_us` per input token not already cached
for the conversation, `decode_us` per output token. Time follows an absolute schedule from the
start of the response, so per-token latencies below the event loop's timer resolution (1 ms under
uvloop) still add up to the right total.

Cache hits are counted the way the local engine counts them: a continuation reuses the longest
common prefix of its rendered context with its parent's (the parent's own output included), in
whole tokens; a change early on (other instructions or tools) makes everything after it new.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import re
from collections import OrderedDict
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from tether.backends.base import (
    CacheStats,
    Cancellation,
    EngineReach,
    Finished,
    FinishReason,
    Generation,
    ModelEvent,
    Prompt,
    TextDelta,
    ToolCallDelta,
    ToolCallStarted,
)
from tether.config import ScriptedModel
from tether.protocol.items import (
    NAMESPACE_SEPARATOR,
    FunctionCall,
    FunctionCallOutput,
    Item,
    Message,
    OpaqueItem,
    Reasoning,
)
from tether.protocol.resources import ModelDetails
from tether.protocol.response import Usage
from tether.protocol.tools import FunctionTool

BYTES_PER_TOKEN = 4
DEFAULT_ANSWER_TOKENS = 16
MODEL_ID = "tether-scripted"
_WORDS = ("ant ", "bee ", "cat ", "dog ", "elk ", "fox ", "gnu ", "hen ", "ivy ", "jay ", "koi ",
          "elm ", "fig ", "gem ", "owl ", "pug ", "hat ", "ram ", "ink ", "jam ", "urn ", "kit ",
          "log ", "yak ", "map ")  # fmt: skip
RENDERS_MAX_CHARS = 64 * 1024**2  # what the cache keeps of conversations' rendered text (LRU)


def count_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)


class ScriptedBackend:
    def __init__(self, latency: ScriptedModel | None = None, model_id: str = MODEL_ID) -> None:
        """`latency`: what a prefilled token, a decoded one and a response cost (none by default)."""
        self.latency = latency or ScriptedModel()
        self._model_id = model_id
        self._renders = Renders(RENDERS_MAX_CHARS)

    @property
    def model_ids(self) -> tuple[str, ...]:
        return (self._model_id,)

    def model_details(self, model_id: str) -> ModelDetails:
        return ModelDetails()  # no context limit, no chat template: text in, words out

    async def render(self, generation: Generation) -> Prompt:
        context = render(generation)
        return Prompt(generation, count_tokens(context), context)

    async def prepare(self, prompt: Prompt, cancel: Cancellation) -> Usage:
        """Charges prefill like a turn and caches the context, so the next turn finds it warm."""
        cached = await self._prefill(prompt, Schedule())
        return Usage(prompt.input_tokens, cached, 0, self._keep(prompt, str(prompt.rendered), cached))

    async def generate(self, prompt: Prompt, cancel: Cancellation) -> AsyncGenerator[ModelEvent, None]:
        generation, context = prompt.generation, str(prompt.rendered)
        schedule = Schedule()
        await schedule.wait_us(self.latency.overhead_ms * 1000)
        input_tokens, cached = prompt.input_tokens, await self._prefill(prompt, schedule)
        tool = choose_tool(generation)
        pieces = _call_pieces(tool, generation) if tool else _answer_pieces(generation)
        budget = generation.max_output_tokens
        if tool is not None:
            yield ToolCallStarted(tool.name)
        produced: list[str] = []
        reason: FinishReason = "stop"
        for piece in pieces:
            if cancel.is_set:
                return
            if budget is not None and len(produced) >= budget:
                reason = "length"
                break
            if cancel.wrapping_up and tool is None:  # a call is finished first (`Cancellation`)
                reason = "steered"
                break
            await schedule.wait_us(self.latency.decode_us)
            produced.append(piece)
            yield ToolCallDelta(piece) if tool else TextDelta(piece)
        if cancel.is_set:
            return
        whole = context + "\n" + _render_output(tool, "".join(produced))
        yield Finished(reason, Usage(input_tokens, cached, len(produced), self._keep(prompt, whole, cached)))

    def _keep(self, prompt: Prompt, whole: str, cached: int) -> int:
        """Keep what a continuation may reuse — `whole` (the context, and the output if any), or
        with explicit caching only the context up to its last marked message — and say how many
        tokens that wrote."""
        generation, kept = prompt.generation, prompt.generation.kept_items
        if kept == 0:
            return 0
        text = (
            whole if kept is None else render(dataclasses.replace(generation, items=generation.items[:kept]))
        )
        self._renders.put(generation.response_id, text)
        return max(0, (prompt.input_tokens if kept is None else count_tokens(text)) - cached)

    async def _prefill(self, prompt: Prompt, schedule: Schedule) -> int:
        """Wait for the tokens not cached for this conversation; how many were cached."""
        context = str(prompt.rendered)
        parent = self._renders.get(prompt.generation.parent_id)
        shared = "" if parent is None else context[: _common_prefix(parent, context)]
        cached = min(len(shared.encode("utf-8")) // BYTES_PER_TOKEN, prompt.input_tokens)  # whole tokens
        await schedule.wait_us(self.latency.prefill_us * (prompt.input_tokens - cached))
        return cached

    def cache_stats(self) -> CacheStats:
        return CacheStats()  # it keeps token counts, never model state

    async def check(self) -> None:
        """Always ready: it is code."""

    async def reach(self) -> tuple[EngineReach, ...]:
        return (EngineReach("scripted, in this process", None),)

    def hold(self, response_id: str) -> None:
        """Nothing to do: a cached conversation here is one integer, and thousands are kept."""

    def release(self, response_id: str) -> None:
        """See `hold`."""

    async def aclose(self) -> None:
        self._renders.clear()


class Schedule:
    """Waits that keep to an absolute timetable from when it was made: a wait shorter than the
    event loop can time is made up by the next one instead of being lost."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time()

    async def wait_us(self, microseconds: float) -> None:
        if microseconds <= 0:
            return
        self._due += microseconds / 1e6
        await asyncio.sleep(max(0.0, self._due - self._loop.time()))


class Renders:
    """Conversations' rendered text (context and output) by response id: LRU under a size budget."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self._texts: OrderedDict[str, str] = OrderedDict()
        self._chars = 0

    def put(self, response_id: str, text: str) -> None:
        self._drop(response_id)
        self._texts[response_id] = text
        self._chars += len(text)
        while self._chars > self.max_chars and len(self._texts) > 1:
            self._drop(next(iter(self._texts)))

    def get(self, response_id: str | None) -> str | None:
        text = self._texts.get(response_id or "")
        if text is not None:
            self._texts.move_to_end(response_id or "")
        return text

    def clear(self) -> None:
        self._texts.clear()
        self._chars = 0

    def _drop(self, response_id: str) -> None:
        text = self._texts.pop(response_id, None)
        if text is not None:
            self._chars -= len(text)


def choose_tool(generation: Generation) -> FunctionTool | None:
    """The decision rules of the module docstring; None means a text answer."""
    allowed = generation.tool_choice.allowed(generation.tools)
    if not allowed:
        return None
    if generation.tool_choice.mode == "required":
        return allowed[0]
    last = generation.items[-1] if generation.items else None
    if isinstance(last, Message) and last.role == "user":
        said = _latest_user_text(generation)
        named = (tool for tool in allowed if tool.name.rsplit(NAMESPACE_SEPARATOR, 1)[-1] in said)
        return next(named, allowed[0])
    return None


def render(generation: Generation) -> str:
    parts = [generation.instructions or ""]
    for tool in generation.tool_choice.allowed(generation.tools):
        schema = json.dumps(tool.parameters, sort_keys=True)
        parts.append(f"tool {tool.name}: {tool.description or ''} {schema}")
    parts.extend(_render_item(item) for item in generation.items)
    return "\n".join(parts)


def _render_item(item: Item) -> str:
    if isinstance(item, Message):
        return f"{item.role}: {item.text}"
    if isinstance(item, FunctionCall):
        return _render_call(item.name, item.arguments)
    if isinstance(item, FunctionCallOutput):
        return f"output [{item.call_id}]: {item.text}"
    if isinstance(item, Reasoning | OpaqueItem):
        return ""
    raise TypeError(f"unresolved item reached the backend: {item!r}")


def _render_call(name: str, arguments: str) -> str:
    # No call_id: the model never sees ids, so its own output renders the same when replayed.
    return f"call {name}({arguments})"


def _render_output(tool: FunctionTool | None, produced: str) -> str:
    """The response's output as its continuation will render it."""
    return _render_call(tool.name, produced) if tool else f"assistant: {produced}"


def _common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix, compared in halving slices (each compare runs in C)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _latest_user_text(generation: Generation) -> str:
    """The user's messages after the model's last output, joined."""
    latest: list[str] = []
    for item in reversed(generation.items):
        if not (isinstance(item, Message) and item.role in ("user", "developer", "system")):
            break
        if item.role == "user":
            latest.append(item.text)
    return "\n".join(reversed(latest))


def _last_user_text(generation: Generation) -> str:
    return next(
        (i.text for i in reversed(generation.items) if isinstance(i, Message) and i.role == "user"), ""
    )


def _answer_pieces(generation: Generation) -> list[str]:
    """Four-byte words (one token each: three letters and a space), picked by a hash of the
    last user message."""
    last_user = _last_user_text(generation)
    length = generation.max_output_tokens or DEFAULT_ANSWER_TOKENS
    digest = hashlib.sha256(last_user.encode("utf-8")).digest()
    return [_WORDS[(digest[i % len(digest)] + i) % len(_WORDS)] for i in range(length)]


def _call_pieces(tool: FunctionTool, generation: Generation) -> list[str]:
    quoted = _FENCED.search(_latest_user_text(generation)) if tool.custom else None
    value = {"input": quoted[1]} if quoted else example_value(tool.parameters)
    arguments = json.dumps(value, separators=(",", ":"))
    return [arguments[i : i + BYTES_PER_TOKEN] for i in range(0, len(arguments), BYTES_PER_TOKEN)]


_FENCED = re.compile(r"```\n?(.*?)```", re.DOTALL)  # what a message quotes, its first newline left out


def example_value(schema: Mapping[str, Any]) -> Any:
    """A deterministic value that satisfies `schema` (the subset tools use in practice)."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return example_value(schema[key][0])
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for sub in schema["allOf"]:
            merged.update(sub)
        return example_value(merged)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties: Mapping[str, Any] = schema.get("properties", {})
        return {name: example_value(sub) for name, sub in properties.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [example_value(schema.get("items", {})) for _ in range(count)]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        # Integral: a JSON number either way, and clients that parse it as an integer accept it.
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "example".ljust(int(schema.get("minLength", 0)), "x")
