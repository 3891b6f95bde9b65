"""Tool definitions and `tool_choice` (spec §4.2, D3).

Tether runs `function` and `custom` tools. A custom (freeform) tool takes raw text: models see it
as a function with one string parameter, `input` (`CUSTOM_INPUT`), and core turns such a call
into a `custom_tool_call` whose `input` is that string (`items.FunctionCall.custom`). Every other
tool type is dropped from what the model sees and from the Response's `tools` echo; naming a
dropped tool in `tool_choice` is a 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from tether.protocol.errors import invalid_request
from tether.protocol.items import model_name

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EMPTY_OBJECT_SCHEMA: Mapping[str, Any] = {"type": "object", "properties": {}}
# The function a custom tool is to a model: its raw text input as one string.
CUSTOM_INPUT: Mapping[str, Any] = {
    "type": "object",
    "properties": {"input": {"type": "string"}},
    "required": ["input"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class InputFormat:
    """A custom tool's `format`: free text, or a grammar (`lark` or `regex`) its input follows."""

    type: Literal["text", "grammar"] = "text"
    syntax: str | None = None
    definition: str | None = None

    def to_wire(self) -> dict[str, Any]:
        if self.type == "text":
            return {"type": "text"}
        return {"type": "grammar", "syntax": self.syntax, "definition": self.definition}


@dataclass(frozen=True)
class Namespace:
    """A `namespace` tool: the group its functions are offered in."""

    name: str
    description: str


@dataclass(frozen=True)
class FunctionTool:
    """A function tool, or a custom one (`format` set), which models see as a function taking
    `CUSTOM_INPUT`; either may be in a `namespace`, which models see in its name
    (`items.model_name`)."""

    name: str
    description: str | None
    parameters: Mapping[str, Any]
    strict: bool | None
    format: InputFormat | None = None
    namespace: Namespace | None = None

    @property
    def custom(self) -> bool:
        return self.format is not None

    @property
    def model_name(self) -> str:
        return model_name(None if self.namespace is None else self.namespace.name, self.name)

    def as_model_sees(self) -> FunctionTool:
        """The function a model is offered: a namespaced one under its model name, described
        with its namespace."""
        if self.namespace is None:
            return self
        about = f"[{self.namespace.name}: {self.namespace.description}]"
        described = f"{about} {self.description}" if self.description else about
        return replace(self, name=self.model_name, description=described, namespace=None)

    def to_wire(self) -> dict[str, Any]:
        if self.format is not None:
            return {"type": "custom", "name": self.name, "description": self.description,
                    "format": self.format.to_wire()}  # fmt: skip
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
            "strict": self.strict,
        }


@dataclass(frozen=True)
class ToolChoice:
    """What the model may or must do: `mode` plus the tools it may pick from.

    `names` is None when every offered tool is allowed. A named function is `required` with one
    name; `allowed_tools` narrows `names` in either mode.
    """

    mode: Literal["none", "auto", "required"]
    names: tuple[str, ...] | None = None

    def allowed(self, tools: tuple[FunctionTool, ...]) -> tuple[FunctionTool, ...]:
        if self.mode == "none":
            return ()
        if self.names is None:
            return tools
        return tuple(t for t in tools if t.name in self.names)


def parse_tools(value: Any) -> tuple[FunctionTool, ...]:
    """The tools Tether runs, a namespace's each in it, in order."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid_request("Invalid type for 'tools': expected an array.", "tools")
    tools: list[FunctionTool] = []
    for i, raw in enumerate(value):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("type"), str):
            raise invalid_request(f"Invalid 'tools[{i}]': expected an object with a 'type'.", "tools")
        if raw["type"] == "namespace":
            tools.extend(_parse_namespace(raw, i))
        elif raw["type"] in ("function", "custom"):
            tools.append(_parse_tool(raw, f"tools[{i}]"))
        # D3: other tools Tether cannot run are dropped, not rejected
    seen: set[str] = set()
    for tool in tools:
        if tool.model_name in seen:
            raise invalid_request(f"Duplicate tool name '{tool.model_name}' in 'tools'.", "tools")
        seen.add(tool.model_name)
    return tuple(tools)


def tools_to_wire(tools: tuple[FunctionTool, ...]) -> list[dict[str, Any]]:
    """The tools as the Response echoes them: a namespace's functions in their namespace."""
    wire: list[dict[str, Any]] = []
    for tool in tools:
        if tool.namespace is None:
            wire.append(tool.to_wire())
            continue
        if not wire or wire[-1].get("type") != "namespace" or wire[-1]["name"] != tool.namespace.name:
            wire.append({"type": "namespace", "name": tool.namespace.name,
                         "description": tool.namespace.description, "tools": []})  # fmt: skip
        wire[-1]["tools"].append(tool.to_wire())
    return wire


def _parse_namespace(raw: Mapping[str, Any], i: int) -> list[FunctionTool]:
    name, description, inner = raw.get("name"), raw.get("description", ""), raw.get("tools")
    if not isinstance(name, str) or not _NAME.match(name) or not isinstance(description, str):
        raise invalid_request(
            f"Invalid 'tools[{i}]': a namespace needs a 'name' and a 'description'.", "tools"
        )
    if not isinstance(inner, list):
        raise invalid_request(f"Invalid 'tools[{i}].tools': expected an array.", "tools")
    namespace = Namespace(name, description)
    parsed = []
    for j, tool in enumerate(inner):
        if not isinstance(tool, Mapping) or tool.get("type") not in ("function", "custom"):
            raise invalid_request(
                f"Invalid 'tools[{i}].tools[{j}]': expected a function or custom tool.", "tools"
            )
        parsed.append(replace(_parse_tool(tool, f"tools[{i}].tools[{j}]"), namespace=namespace))
    return parsed


def _parse_tool(raw: Mapping[str, Any], where: str) -> FunctionTool:
    return _parse_function(raw, where) if raw["type"] == "function" else _parse_custom(raw, where)


def _parse_function(raw: Mapping[str, Any], where: str) -> FunctionTool:
    name = _name(raw, where)
    parameters = raw.get("parameters")
    if parameters is None:
        parameters = _EMPTY_OBJECT_SCHEMA
    if not isinstance(parameters, Mapping):
        raise invalid_request(f"Invalid '{where}.parameters': expected a JSON schema.", "tools")
    strict = raw.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise invalid_request(f"Invalid '{where}.strict': expected a boolean.", "tools")
    return FunctionTool(name=name, description=_description(raw, where), parameters=parameters, strict=strict)


def _parse_custom(raw: Mapping[str, Any], where: str) -> FunctionTool:
    value = raw.get("format") or {"type": "text"}
    kind = value.get("type") if isinstance(value, Mapping) else None
    if kind == "text":
        input_format = InputFormat()
    elif (
        kind == "grammar"
        and value.get("syntax") in ("lark", "regex")
        and isinstance(value.get("definition"), str)
    ):
        input_format = InputFormat("grammar", value["syntax"], value["definition"])
    else:
        raise invalid_request(
            f"Invalid '{where}.format': expected {{'type': 'text'}} or {{'type': 'grammar', "
            "'syntax': 'lark' | 'regex', 'definition': ...}.",
            "tools",
        )
    return FunctionTool(_name(raw, where), _description(raw, where), CUSTOM_INPUT, True, input_format)


def _name(raw: Mapping[str, Any], where: str) -> str:
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise invalid_request(
            f"Invalid '{where}.name': expected 1-64 letters, digits, '_' or '-', got {name!r}.",
            "tools",
        )
    return name


def _description(raw: Mapping[str, Any], where: str) -> str | None:
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        raise invalid_request(f"Invalid '{where}.description': expected a string.", "tools")
    return description


def parse_tool_choice(value: Any, tools: tuple[FunctionTool, ...]) -> ToolChoice:
    """A choice names top-level tools (a namespace's functions are offered, never named)."""
    tools = tuple(t for t in tools if t.namespace is None)
    offered = {t.name for t in tools}
    if value is None or value == "auto":
        return ToolChoice("auto")
    if value in ("none", "required"):
        return ToolChoice(value)
    if not isinstance(value, Mapping):
        raise invalid_request(
            f"Invalid 'tool_choice': expected 'none', 'auto', 'required' or an object, got {value!r}.",
            "tool_choice",
        )
    kind = value.get("type")
    if kind in ("function", "custom"):
        name = value.get("name")
        if not any(t.name == name and t.custom == (kind == "custom") for t in tools):
            raise invalid_request(f"Tool choice '{name}' not found in 'tools' parameter.", "tool_choice")
        return ToolChoice("required", (str(name),))
    if kind == "allowed_tools":
        mode = value.get("mode", "auto")
        listed = value.get("tools")
        if mode not in ("auto", "required") or not isinstance(listed, list):
            raise invalid_request(
                "Invalid 'tool_choice': allowed_tools needs 'mode' auto|required and 'tools'.",
                "tool_choice",
            )
        names = tuple(t.get("name") if isinstance(t, Mapping) else t for t in listed)
        missing = [n for n in names if n not in offered]
        if missing:
            raise invalid_request(
                f"Tool choice names tools that are not available: {missing}.", "tool_choice"
            )
        return ToolChoice(mode, tuple(str(n) for n in names))
    raise invalid_request(
        f"Tool choice of type '{kind}' names a tool this server does not run.", "tool_choice"
    )
