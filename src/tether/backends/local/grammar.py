"""GBNF grammar that forces the model to emit exactly one call to one of the given tools, as
its tool format writes calls (`tool_formats.py`: a list of one in Mistral's and Phi-4-mini's,
FunctionGemma's own syntax in `escaped.py`). What it wrote is read by `tool_calls.CallScanner`.

A custom tool forced alone whose input has a grammar gets that grammar (`input_grammar`); when
the grammar is outside what can be converted, its input is any string, and the log says why.

The grammar comes from llama.cpp's JSON-schema converter fed with
`{"name": {"const": NAME}, "arguments": <the tool's parameters>}` (an `anyOf` of those for several
tools). Each tool's parameters are placed under the combined schema's `$defs` with their local
`$ref`s rewritten, because a tool schema generated from e.g. pydantic refers to its own `$defs`
relative to its own root, which is no longer the document root once it is embedded.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from llama_cpp.llama_grammar import json_schema_to_gbnf

from tether.backends.local.escaped import escaped_grammar
from tether.backends.local.input_grammar import Unsupported, call_grammar
from tether.backends.local.tool_formats import ToolFormat
from tether.protocol.tools import FunctionTool

log = logging.getLogger(__name__)

# Arguments for a tool whose schema the converter cannot handle (remote `$ref`s, unknown types):
# any JSON object still beats refusing the request.
_ANY_OBJECT: Mapping[str, Any] = {"type": "object"}
_DEFS_KEYS = ("$defs", "definitions")


def tool_call_grammar(tools: tuple[FunctionTool, ...], format: ToolFormat) -> str:
    """GBNF of one call to one of `tools` in `format` (less its markup, which the prompt opens
    and the engine closes)."""
    if format.escaped:  # a custom tool's grammar is over a JSON string: not in this syntax
        json_grammar = str(json_schema_to_gbnf(json.dumps(tool_call_schema(tools))))
        return escaped_grammar(json_grammar, [tool.name for tool in tools])
    grammar = _call_grammar(tools, format.arguments_key)
    if not format.listed:
        return grammar
    call = re.sub(r"^root ::=", f"{_LISTED_CALL} ::=", grammar, flags=re.MULTILINE)
    return f'{call.rstrip()}\nroot ::= "[" {_LISTED_CALL} "]"\n'


_LISTED_CALL = "call-in-list"  # the rule of the call of a grammar whose root is a list of it


def _call_grammar(tools: tuple[FunctionTool, ...], arguments_key: str) -> str:
    if not tools:
        raise ValueError("a forced tool call needs at least one tool")
    (only, *others) = tools
    if not others and only.format is not None and only.format.type == "grammar":
        try:
            return call_grammar(only.name, only.format, arguments_key)
        except Unsupported as exc:
            log.warning("the input of custom tool %r is not held to its grammar: %s", only.name, exc)
    return str(json_schema_to_gbnf(json.dumps(tool_call_schema(tools, arguments_key))))


def tool_call_schema(tools: tuple[FunctionTool, ...], arguments_key: str = "arguments") -> dict[str, Any]:
    defs: dict[str, Any] = {}
    calls = []
    for i, tool in enumerate(tools):
        parameters = tool.parameters if _convertible(tool.parameters) else _ANY_OBJECT
        defs.update(_hoist(parameters, f"args-{i}"))
        calls.append(
            {
                "type": "object",
                "properties": {
                    "name": {"const": tool.name},
                    arguments_key: {"$ref": f"#/$defs/args-{i}"},
                },
                "required": ["name", arguments_key],
                "additionalProperties": False,
            }
        )
    root: dict[str, Any] = calls[0] if len(calls) == 1 else {"anyOf": calls}
    return {"$defs": defs, **root}


def _convertible(schema: Mapping[str, Any]) -> bool:
    try:
        json_schema_to_gbnf(json.dumps(schema))
    except Exception:  # the converter signals unsupported input with assorted exception types
        return False
    return True


def _hoist(schema: Mapping[str, Any], name: str) -> dict[str, Any]:
    """`schema` as `$defs` entries of the combined document: itself as `name`, its own
    definitions as `name-DEF`, every local `$ref` rewritten to match."""
    body = {k: v for k, v in schema.items() if k not in _DEFS_KEYS}
    hoisted = {name: _relocate(body, name)}
    for key in _DEFS_KEYS:
        definitions = schema.get(key)
        if isinstance(definitions, Mapping):
            for def_name, definition in definitions.items():
                hoisted[f"{name}-{def_name}"] = _relocate(definition, name)
    return hoisted


def _relocate(node: Any, name: str) -> Any:
    if isinstance(node, Mapping):
        return {
            k: _relocate_ref(v, name) if k == "$ref" and isinstance(v, str) else _relocate(v, name)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_relocate(v, name) for v in node]
    return node


def _relocate_ref(ref: str, name: str) -> str:
    if ref == "#":
        return f"#/$defs/{name}"
    if not ref.startswith("#/"):
        return ref  # remote refs are rejected by `_convertible` before they get here
    first, _, rest = ref[2:].partition("/")
    if first in _DEFS_KEYS:
        return f"#/$defs/{name}-{rest}"
    return f"#/$defs/{name}/{ref[2:]}"
