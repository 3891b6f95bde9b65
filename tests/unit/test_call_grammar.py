"""A forced call's grammar writes the call as its tool format does: the object alone, or a list
of one in Mistral's and Phi-4-mini's, its arguments under the format's key; a custom tool's
grammar the same way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.grammar_check import GrammarCheck
from tether.backends.local.grammar import tool_call_grammar
from tether.backends.local.model_file import locate
from tether.backends.local.tool_formats import FUNCTION_GEMMA, HERMES, LLAMA3, MISTRAL, PHI4_MINI
from tether.protocol.tools import FunctionTool, InputFormat

CITY = FunctionTool("get_weather", "", {"type": "object", "properties": {"city": {"enum": ["Rome"]}},
                    "required": ["city"], "additionalProperties": False}, strict=True)  # fmt: skip
DIGITS = FunctionTool("count", "", {}, None, format=InputFormat("grammar", "regex", "[0-9]+"))


@pytest.fixture(scope="module")
def check() -> Iterator[GrammarCheck]:
    checker = GrammarCheck(locate(None).path)
    yield checker
    checker.close()


def test_a_call_in_each_format(check: GrammarCheck) -> None:
    call = '{"name": "get_weather", "arguments": {"city": "Rome"}}'
    for format in (HERMES, MISTRAL, PHI4_MINI):
        grammar = tool_call_grammar((CITY,), format)
        assert check.accepts(grammar, f"[{call}]" if format.listed else call)
        assert not check.accepts(grammar, call if format.listed else f"[{call}]")
    assert check.accepts(tool_call_grammar((CITY,), LLAMA3), call.replace("arguments", "parameters"))


MANY = FunctionTool("plan", "", {"type": "object", "properties": {"days": {"type": "integer"},
                    "tags": {"type": "array", "items": {"type": "string"}}, "more": {"type": "object"}},
                    "required": ["days"], "additionalProperties": False}, strict=True)  # fmt: skip


def test_function_gemma_s_syntax(check: GrammarCheck) -> None:
    grammar = tool_call_grammar((CITY, MANY), FUNCTION_GEMMA)
    assert check.accepts(grammar, "call:get_weather{city:<escape>Rome<escape>}")
    assert check.accepts(grammar, "call:plan{days:3,tags:[<escape>a b<escape>],more:{x:<escape>y<escape>}}")
    assert not check.accepts(grammar, 'call:get_weather{"city":"Rome"}')  # JSON's keys and strings
    assert not check.accepts(grammar, "call:get_weather{city:<escape>Paris<escape>}")  # not in its enum
    assert not check.accepts(grammar, "call:plan{tags:[]}")  # days is required


def test_a_custom_tool_s_grammar_in_a_list(check: GrammarCheck) -> None:
    grammar = tool_call_grammar((DIGITS,), MISTRAL)
    assert check.accepts(grammar, '[{"name": "count", "arguments": {"input": "42"}}]')
    assert not check.accepts(grammar, '[{"name": "count", "arguments": {"input": "4x"}}]')
