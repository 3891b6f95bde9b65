"""LocalBackend against the real SmolLM2-135M-Instruct GGUF: text, forced calls, limits, cache."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.core_turns import run_turns
from tether.backends.base import (
    BackendUnavailable,
    Cancellation,
    ContextOverflow,
    Finished,
    Generation,
    ModelEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallStarted,
)
from tether.backends.local import LocalBackend, engine
from tether.backends.local.jobs import build
from tether.backends.local.model_file import DEFAULT_MODEL_ID, locate
from tether.config import LocalEngine
from tether.protocol.items import Item, Message, TextPart
from tether.protocol.tools import FunctionTool, ToolChoice

WEATHER = FunctionTool(
    name="get_weather",
    description="Get the weather forecast for a city.",
    parameters={
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "days": {"type": "integer", "description": "Number of days"},
        },
        "required": ["city", "days"],
    },
    strict=None,
)
EMAIL = FunctionTool(
    name="send_email",
    description="Send an email.",
    parameters={
        "type": "object",
        "properties": {"to": {"type": "string"}, "body": {"type": "string"}},
        "required": ["to", "body"],
    },
    strict=None,
)
# Shaped like a pydantic-generated schema: the nested model lives in the tool's own `$defs`.
SHIP = FunctionTool(
    name="ship_parcel",
    description="Ship a parcel to an address.",
    parameters={
        "$defs": {
            "Address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "zip": {"type": "integer"}},
                "required": ["street", "zip"],
            }
        },
        "type": "object",
        "properties": {"to": {"$ref": "#/$defs/Address"}},
        "required": ["to"],
    },
    strict=None,
)


def user(text: str) -> Message:
    return Message(role="user", content=(TextPart("input_text", text),))


def assistant(text: str) -> Message:
    return Message(role="assistant", content=(TextPart("output_text", text),))


def generation(items: tuple[Item, ...], **overrides: Any) -> Generation:
    fields: dict[str, Any] = {
        "response_id": "resp_1",
        "parent_id": None,
        "model": DEFAULT_MODEL_ID,
        "items": items,
        "instructions": None,
        "tools": (),
        "tool_choice": ToolChoice("auto"),
        "max_output_tokens": 32,
        "cache_scope": "default",
        "temperature": 0.0,
    }
    return Generation(**(fields | overrides))


def collect(backend: LocalBackend, gen: Generation, cancel: Cancellation | None = None) -> list[ModelEvent]:
    async def run() -> list[ModelEvent]:
        prompt = await backend.render(gen)
        return [event async for event in backend.generate(prompt, cancel or Cancellation())]

    return asyncio.run(run())


def finished(events: list[ModelEvent]) -> Finished:
    last = events[-1]
    assert isinstance(last, Finished)
    assert not any(isinstance(e, Finished) for e in events[:-1])
    return last


def tool_call(events: list[ModelEvent]) -> tuple[str, Any]:
    """The single call in `events`: its name and parsed arguments."""
    assert isinstance(events[0], ToolCallStarted)
    deltas = events[1:-1]
    assert deltas and all(isinstance(d, ToolCallDelta) for d in deltas)
    return events[0].name, json.loads("".join(d.arguments for d in deltas))  # type: ignore[union-attr]


def satisfies(arguments: Any, schema: Mapping[str, Any]) -> bool:
    """Enough of JSON Schema for the flat object schemas above."""
    kinds = {"string": str, "integer": int, "object": dict}
    if not isinstance(arguments, dict) or not set(schema["required"]) <= arguments.keys():
        return False
    for key, value in arguments.items():
        expected = kinds[schema["properties"][key]["type"]]
        if not isinstance(value, expected) or isinstance(value, bool):
            return False
    return True


@pytest.fixture(scope="module")
def backend() -> Iterator[LocalBackend]:
    loaded = LocalBackend.load(LocalEngine(fastest_weights=False))  # the same answers on every machine
    yield loaded
    asyncio.run(loaded.aclose())


@pytest.mark.local_model
def test_answers_a_question(backend: LocalBackend) -> None:
    events = collect(backend, generation((user("What is the capital of France?"),)))
    done = finished(events)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert all(isinstance(e, TextDelta) for e in events[:-1])
    assert text.strip()
    assert done.usage.input_tokens > 0
    assert done.usage.output_tokens > 0
    assert backend.model_ids == (DEFAULT_MODEL_ID,)


@pytest.mark.local_model
def test_the_rendered_size_is_the_prompt_the_model_runs(backend: LocalBackend) -> None:
    gen = generation((user("Hello there"),), max_output_tokens=1)
    counted = asyncio.run(backend.render(gen)).input_tokens
    assert finished(collect(backend, gen)).usage.input_tokens == counted


@pytest.mark.local_model
def test_named_function_is_called_with_schema_valid_arguments(backend: LocalBackend) -> None:
    gen = generation(
        (user("What will the weather be in Paris over the next 3 days?"),),
        tools=(WEATHER, EMAIL),
        tool_choice=ToolChoice("required", ("get_weather",)),
        max_output_tokens=64,
    )
    events = collect(backend, gen)
    assert finished(events).reason == "stop"
    name, arguments = tool_call(events)
    assert name == "get_weather"
    assert satisfies(arguments, WEATHER.parameters)


@pytest.mark.local_model
def test_required_over_two_tools_calls_one_of_them(backend: LocalBackend) -> None:
    gen = generation(
        (user("What's the weather in Paris for the next 3 days?"),),
        tools=(WEATHER, EMAIL),
        tool_choice=ToolChoice("required"),
        max_output_tokens=64,
    )
    events = collect(backend, gen)
    assert finished(events).reason == "stop"
    name, arguments = tool_call(events)
    schemas = {t.name: t.parameters for t in (WEATHER, EMAIL)}
    assert name in schemas
    assert satisfies(arguments, schemas[name])


@pytest.mark.local_model
def test_tool_schema_with_local_defs(backend: LocalBackend) -> None:
    gen = generation(
        (user("Ship it to 1 Main Street, zip 12345."),),
        tools=(SHIP,),
        tool_choice=ToolChoice("required"),
        max_output_tokens=64,
    )
    events = collect(backend, gen)
    assert finished(events).reason == "stop"
    name, arguments = tool_call(events)
    assert name == "ship_parcel"
    assert satisfies(arguments["to"], SHIP.parameters["$defs"]["Address"])


@pytest.mark.local_model
def test_max_output_tokens_cuts_with_reason_length(backend: LocalBackend) -> None:
    events = collect(
        backend, generation((user("Tell me a long story about a dragon."),), max_output_tokens=3)
    )
    done = finished(events)
    assert done.reason == "length"
    assert done.usage.output_tokens == 3


@pytest.mark.local_model
def test_cut_tool_call_still_reports_the_name(backend: LocalBackend) -> None:
    gen = generation(
        (user("Weather in Rome for 2 days?"),),
        tools=(WEATHER,),
        tool_choice=ToolChoice("required"),
        max_output_tokens=12,
    )
    events = collect(backend, gen)
    assert finished(events).reason == "length"
    assert events[0] == ToolCallStarted("get_weather")
    assert isinstance(events[1], ToolCallDelta)


@pytest.mark.local_model
def test_cancellation_ends_the_stream_without_finished(backend: LocalBackend) -> None:
    # Greedy SmolLM2 loops on this prompt, so without cancellation it would run to the budget.
    gen = generation((user("What is the capital of France?"),), max_output_tokens=1000)
    prompt = asyncio.run(backend.render(gen))
    prompt_tokens = prompt.input_tokens
    cancel = Cancellation()

    async def run() -> list[ModelEvent]:
        events: list[ModelEvent] = []
        async for event in backend.generate(prompt, cancel):
            events.append(event)
            cancel.cancel("client went away")
        return events

    events = asyncio.run(run())
    assert len(events) == 1 and isinstance(events[0], TextDelta)
    # What the context holds shows how far the worker went: a few tokens, not the budget.
    assert backend.context_tokens - prompt_tokens < 100
    # The worker let go of the model: the next request is served.
    assert finished(collect(backend, generation((user("Hi"),), max_output_tokens=2)))


@pytest.mark.local_model
def test_a_slow_consumer_makes_the_model_wait(backend: LocalBackend) -> None:
    """Backpressure: the model thread runs at most a bounded number of tokens ahead."""
    gen = generation((user("What is the capital of France?"),), max_output_tokens=1000)
    prompt = asyncio.run(backend.render(gen))
    prompt_tokens = prompt.input_tokens
    cancel = Cancellation()

    async def read_one_then_idle() -> int:
        stream = backend.generate(prompt, cancel)
        await anext(stream)
        await asyncio.sleep(3)  # ~300 tokens' worth of decoding, were nothing holding it back
        ahead = backend.context_tokens - prompt_tokens
        cancel.cancel("done looking")
        await stream.aclose()
        return ahead

    assert asyncio.run(read_one_then_idle()) <= 64 + 2  # the credits, the one read, one in hand


@pytest.mark.local_model
def test_continuation_reuses_the_cached_prefix(backend: LocalBackend) -> None:
    first_items = (user("Name a color."),)
    first = collect(backend, generation(first_items, max_output_tokens=16))
    answer = "".join(e.text for e in first if isinstance(e, TextDelta))
    second = collect(backend, generation((*first_items, assistant(answer), user("Name another one."))))
    # The first prompt (everything up to the assistant turn) is a prefix of the second one.
    assert finished(second).usage.cached_tokens >= finished(first).usage.input_tokens


@pytest.mark.local_model
def test_concurrent_generations_take_turns(backend: LocalBackend) -> None:
    async def both() -> list[list[ModelEvent]]:
        async def one(text: str) -> list[ModelEvent]:
            prompt = await backend.render(generation((user(text),), max_output_tokens=8))
            return [event async for event in backend.generate(prompt, Cancellation())]

        return list(await asyncio.gather(one("Say hello."), one("Say goodbye.")))

    for events in asyncio.run(both()):
        assert finished(events).usage.output_tokens > 0


@pytest.mark.local_model
def test_context_overflow_is_refused_before_generating(backend: LocalBackend) -> None:
    gen = generation((user("Hi"),), max_output_tokens=backend.n_ctx)
    with pytest.raises(ContextOverflow) as raised:
        collect(backend, gen)
    assert raised.value.limit == backend.n_ctx
    assert raised.value.needed > backend.n_ctx


@pytest.mark.local_model
def test_closed_backend_is_unavailable() -> None:
    closing = LocalBackend.load(LocalEngine(n_ctx=512))
    assert closing.n_ctx == 512
    asyncio.run(closing.aclose())
    with pytest.raises(BackendUnavailable):
        collect(closing, generation((user("Hi"),)))


def test_explicit_model_path_must_be_an_existing_gguf(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match=r"not a \.gguf"):
        locate(tmp_path / "model.bin")
    with pytest.raises(BackendUnavailable, match="does not exist"):
        locate(tmp_path / "missing.gguf")


def test_explicit_model_is_named_after_its_file(tmp_path: Path) -> None:
    model = tmp_path / "My-Model.Q8_0.gguf"
    model.write_bytes(b"")
    assert locate(model).model_id == "My-Model.Q8_0"


@pytest.mark.local_model
def test_a_turn_builds_its_prompt_once(
    backend: LocalBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tokens counted before `response.created` are the ones the model runs: one build of
    the prompt per turn, on the path every transport takes."""
    built: list[str] = []

    def counting(generation: Generation, *args: Any, **kwargs: Any) -> Any:
        built.append(generation.response_id)
        return build(generation, *args, **kwargs)

    monkeypatch.setattr(engine, "build", counting)
    turn = {"input": "Name a color.", "max_output_tokens": 4, "temperature": 0}
    first, second = run_turns(backend, tmp_path / "t.db", turn, {**turn, "previous_response_id": "{last}"})
    assert built == [first["id"], second["id"]]
