"""The tool-call formats of the families no packaged model covers (Qwen's Hermes tags, Llama 3's
bare objects, Mistral's `[TOOL_CALLS]` list, Phi-4-mini's `functools` list, FunctionGemma's
`call:NAME{...}` with its `<escape>` strings), on the local engine
with tiny scripted models (`tests/tiny_gguf.py`): each has its family's special tokens and one
of our templates of that family in the file, and answers with text and two calls split across
tokens in its family's format, as a model of that family would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.server_process import TetherServer
from tests.tiny_gguf import TinyModel, write

pytestmark = pytest.mark.local_model

DATA = Path(__file__).parents[1] / "data"

# Each model's answer, after the token its template opens the assistant's turn with: pieces cut
# inside the markup and the arguments, so that both arrive across several deltas.
FAMILIES = {
    "hermes": TinyModel(
        specials=("<|im_start|>", "<|im_end|>", "<|endoftext|>"),
        user_defined=("<tool_call>", "</tool_call>"),  # Qwen's: tokens of their own, shown as text
        eos="<|im_end|>",
        scripts=(
            (
                "\n",
                "Let me check.",
                "<tool_call>",
                '\n{"name": "get_weather", "argu',
                'ments": {"ci',
                'ty": "Paris"}}\n',
                "</tool_call>",
                '\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>',
            ),
        ),
    ),
    "llama3_json": TinyModel(
        specials=("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
        eos="<|eot_id|>",
        bos="<|begin_of_text|>",
        scripts=(
            (
                "\n",
                '{"name": "get_weather", "param',
                'eters": {"ci',
                'ty": "Paris"}}; {"na',
                'me": "get_time", "parameters": {}}',
            ),
        ),
    ),
    "mistral": TinyModel(
        specials=(
            "<s>",
            "</s>",
            "[INST]",
            "[/INST]",
            "[TOOL_CALLS]",
            "[AVAILABLE_TOOLS]",
            "[/AVAILABLE_TOOLS]",
            "[TOOL_RESULTS]",
            "[/TOOL_RESULTS]",
        ),
        eos="</s>",
        bos="<s>",
        scripts=(
            (
                "[/INST]",
                "[TOOL_CALLS]",
                '[{"name": "get_weather", "arg',
                'uments": {"ci',
                'ty": "Paris"}, "id": "abc',
                '123def"}, {"name": "get_time", "arguments": {}}]',
            ),
        ),
    ),
    "phi4_mini": TinyModel(
        specials=("<|system|>", "<|user|>", "<|assistant|>", "<|tool|>", "<|/tool|>", "<|end|>"),
        eos="<|end|>",
        scripts=(
            (
                "<|assistant|>",
                "Checking.",
                " func",
                'tools[{"name": "get_weather", "argu',
                'ments": {"ci',
                'ty": "Paris"}}, {"name": "get_time", "arguments": {}}',
                "]",
            ),
        ),
    ),
    "function_gemma": TinyModel(
        specials=(
            "<bos>",
            "<eos>",
            "<start_of_turn>",
            "<end_of_turn>",
            "<start_function_declaration>",
            "<end_function_declaration>",
            "<start_function_call>",
            "<end_function_call>",
            "<start_function_response>",
            "<end_function_response>",
            "<escape>",
        ),
        eos="<end_of_turn>",
        bos="<bos>",
        # One <escape> token (a token has one successor here), the rest written as text.
        scripts=(
            (
                "\n",
                "Checking.",
                "<start_function_call>",
                "call:get_weather{ci",
                "ty:",
                "<escape>",
                "Paris<escape>}",
                "<end_function_call>",
                "<start_function_call>call:get_time{}<end_function_call>",
            ),
        ),
    ),
}
TEMPLATES = {"hermes": "hermes", "llama3_json": "llama3", "mistral": "mistral", "phi4_mini": "phi4_mini",
             "function_gemma": "function_gemma"}  # fmt: skip
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"enum": ["Paris", "Rome"]}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
# Schemas that leave a forced call's greedy answer one way to end: with every token but the
# script's tied, greedy sampling takes the lowest-numbered token, and in a free string that is
# a space, forever.
TIME = {"type": "function", "name": "get_time", "description": "The time",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False}}  # fmt: skip
TOOLS: Any = [WEATHER, TIME]


@dataclass(frozen=True)
class Served:
    server: TetherServer
    model: str  # its id in /v1/models

    def create(self, **kwargs: Any) -> Any:
        return self.server.client().responses.create(**self._request(kwargs))

    def create_over(self, conn: Any, **kwargs: Any) -> Any:
        """A turn over a WebSocket connection: its final response."""
        conn.response.create(**self._request({"store": False, **kwargs}))
        event = next(e for e in conn if e.type in ("response.completed", "response.incomplete", "error"))
        assert event.type != "error", event
        return event.response

    def _request(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"model": self.model, "input": "Weather in Paris, and the time?", "tools": TOOLS,
                "temperature": 0, "max_output_tokens": 300, **kwargs}  # fmt: skip


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    name = request.param
    folder = tmp_path_factory.mktemp(name)
    model = replace(FAMILIES[name], chat_template=(DATA / f"{TEMPLATES[name]}.jinja").read_text())
    with TetherServer(folder / "tether.db", model=str(write(model, folder / f"{name}.gguf"))) as server:
        [served] = server.client().models.list().data
        assert served.tool_format == name  # type: ignore[attr-defined]
        yield Served(server, served.id)


def test_text_and_two_calls_stream_as_the_model_writes_them(family: Served) -> None:
    events = list(family.create(stream=True))
    done = events[-1].response
    assert done.status == "completed"
    calls = [item for item in done.output if item.type == "function_call"]
    assert [(call.name, json.loads(call.arguments)) for call in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {}),
    ]
    texts = [item.content[0].text for item in done.output if item.type == "message"]
    assert texts in ([], ["Let me check."], ["Checking."])  # some say a word first
    first = len(texts)  # the first call's output index
    deltas = [
        e for e in events if e.type == "response.function_call_arguments.delta" and e.output_index == first
    ]
    assert len(deltas) >= 2 and "".join(e.delta for e in deltas) == calls[0].arguments  # split as written


def test_one_call_when_parallel_calls_are_off(family: Served) -> None:
    done = family.create(parallel_tool_calls=False)
    calls = [item for item in done.output if item.type == "function_call"]
    assert done.status == "completed" and [call.name for call in calls] == ["get_weather"]


@pytest.mark.parametrize("tool", [WEATHER, TIME], ids=["weather", "time"])
def test_a_forced_call_is_valid_for_its_schema_in_the_family_s_format(family: Served, tool: Any) -> None:
    done = family.create(tool_choice={"type": "function", "name": tool["name"]})
    assert done.status == "completed"
    [call] = done.output
    assert call.type == "function_call" and call.name == tool["name"]
    jsonschema.validate(json.loads(call.arguments), tool["parameters"])


def test_the_results_go_back_through_the_template_and_the_prompt_is_reused(family: Served) -> None:
    with family.server.client().responses.connect() as conn:
        first = family.create_over(conn)
        results = [{"type": "function_call_output", "call_id": item.call_id, "output": "22 C"}
                   for item in first.output if item.type == "function_call"]  # fmt: skip
        then = family.create_over(conn, input=results, previous_response_id=first.id)
    assert len(results) == 2 and then.status == "completed"
    assert then.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens
    assert then.usage.input_tokens > first.usage.input_tokens + len(results)
