"""Input and output items (spec §6.5, §6.6): parsed from the wire into frozen values and back.

Parsing is lenient where the spec asks for it (unknown keys on items and parts are dropped, known
OpenAI item types Tether has no use for are kept but never shown to the model) and precise where it
rejects: every error names the offending path, e.g. `input[2].call_id`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson

from tether.protocol.errors import ApiError, invalid_request

Role = Literal["user", "assistant", "system", "developer"]
ROLES: frozenset[str] = frozenset({"user", "assistant", "system", "developer"})

# Items OpenAI defines for hosted tools. Accepted (a stateless client may replay them) and stored,
# but left out of what the model sees (§6.6 "Leniency").
HOSTED_ITEM_TYPES: frozenset[str] = frozenset(
    {
        "web_search_call", "file_search_call", "computer_call", "computer_call_output",
        "code_interpreter_call", "image_generation_call", "local_shell_call",
        "local_shell_call_output", "shell_call", "shell_call_output", "apply_patch_call",
        "apply_patch_call_output", "mcp_call", "mcp_list_tools", "mcp_approval_request",
        "mcp_approval_response", "tool_search_call", "tool_search_output",
    }
)  # fmt: skip


@dataclass(frozen=True)
class TextPart:
    """`input_text`, `output_text` or `refusal` content."""

    type: Literal["input_text", "output_text", "refusal"]
    text: str
    breakpoint: bool = False  # `prompt_cache_breakpoint`: a reusable prefix ends here

    def to_wire(self) -> dict[str, Any]:
        if self.type == "refusal":
            return {"type": "refusal", "refusal": self.text}
        if self.type == "output_text":
            return {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}
        if self.breakpoint:
            return {"type": "input_text", "text": self.text, "prompt_cache_breakpoint": {"mode": "explicit"}}
        return {"type": "input_text", "text": self.text}


@dataclass(frozen=True)
class AttachmentPart:
    """`input_image` or `input_file`: kept verbatim; the text models here see a placeholder."""

    type: Literal["input_image", "input_file"]
    fields: tuple[tuple[str, Any], ...]

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, **dict(self.fields)}

    @property
    def breakpoint(self) -> bool:
        return "prompt_cache_breakpoint" in dict(self.fields)

    @property
    def placeholder(self) -> str:
        name = dict(self.fields).get("filename")
        return f"[{self.type.removeprefix('input_')}{': ' + name if name else ''}]"


ContentPart = TextPart | AttachmentPart


@dataclass(frozen=True)
class Message:
    role: Role
    content: tuple[ContentPart, ...]
    id: str | None = None
    status: str | None = None
    phase: str | None = None

    @property
    def text(self) -> str:
        return "".join(p.text if isinstance(p, TextPart) else p.placeholder for p in self.content)

    @property
    def breakpoint(self) -> bool:
        """A part of it ends a reusable prompt prefix (`prompt_cache_breakpoint`)."""
        return any(part.breakpoint for part in self.content)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": "message", "id": self.id, "role": self.role}
        if self.status is not None:
            wire["status"] = self.status
        wire["content"] = [p.to_wire() for p in self.content]
        if self.phase is not None:
            wire["phase"] = self.phase
        return wire


NAMESPACE_SEPARATOR = "__"


def model_name(namespace: str | None, name: str) -> str:
    """The name a model knows a tool by: a namespaced one's is unambiguous (`ns__name`)."""
    return name if namespace is None else f"{namespace}{NAMESPACE_SEPARATOR}{name}"


@dataclass(frozen=True)
class FunctionCall:
    """A `function_call`, or a `custom_tool_call` (`custom`), whose `arguments` are its raw
    `input`; `namespace`: the namespace tool its function is in."""

    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None
    custom: bool = False
    namespace: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": "custom_tool_call" if self.custom else "function_call", "id": self.id,
                                "call_id": self.call_id, "name": self.name}  # fmt: skip
        if self.namespace is not None:
            wire["namespace"] = self.namespace
        wire["input" if self.custom else "arguments"] = self.arguments
        if not self.custom:  # a custom tool's call has no status (the SDK's `ResponseCustomToolCall`)
            wire["status"] = self.status or "completed"
        return wire


@dataclass(frozen=True)
class FunctionCallOutput:
    """A `function_call_output`, or a `custom_tool_call_output` (`custom`)."""

    call_id: str
    output: str | tuple[ContentPart, ...]
    id: str | None = None
    status: str | None = None
    custom: bool = False

    @property
    def text(self) -> str:
        if isinstance(self.output, str):
            return self.output
        return "".join(p.text if isinstance(p, TextPart) else p.placeholder for p in self.output)

    def to_wire(self) -> dict[str, Any]:
        output = self.output if isinstance(self.output, str) else [p.to_wire() for p in self.output]
        if self.custom:  # no status, as the SDK's `ResponseCustomToolCallOutput` has none
            return {
                "type": "custom_tool_call_output",
                "id": self.id,
                "call_id": self.call_id,
                "output": output,
            }
        return {"type": "function_call_output", "id": self.id, "call_id": self.call_id, "output": output,
                "status": self.status or "completed"}  # fmt: skip


@dataclass(frozen=True)
class ItemReference:
    """Points at an item stored earlier; resolved by core before the model sees anything."""

    id: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "item_reference", "id": self.id}


@dataclass(frozen=True)
class Compaction:
    """A compacted window from `POST /v1/responses/compact`, expanded by core."""

    encrypted_content: str
    id: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"type": "compaction", "id": self.id, "encrypted_content": self.encrypted_content}


@dataclass(frozen=True)
class Reasoning:
    """A `reasoning` item: the model's thinking. `text` is that thinking as the model wrote it:
    the item's `reasoning_text` content, or what its `encrypted_content` seals once core has
    opened it (`core.sealing`); empty when neither is readable. `fields` are the item's own, kept
    to echo it as it came."""

    text: str
    fields: tuple[tuple[str, Any], ...]
    id: str | None = None

    @property
    def encrypted_content(self) -> str | None:
        blob = dict(self.fields).get("encrypted_content")
        return blob if isinstance(blob, str) else None

    def to_wire(self) -> dict[str, Any]:
        return {"type": "reasoning", "id": self.id, **dict(self.fields)}


@dataclass(frozen=True)
class OpaqueItem:
    """Hosted-tool records: stored and echoed, never rendered."""

    type: str
    fields: tuple[tuple[str, Any], ...]
    id: str | None = None
    call_id: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, **dict(self.fields)}


Item = Message | FunctionCall | FunctionCallOutput | ItemReference | Compaction | Reasoning | OpaqueItem


def as_model_sees(item: Item) -> Item:
    """`item` as a backend renders it: a custom tool's call is a function call whose arguments
    are `{"input": <its raw input>}` (`tools.CUSTOM_INPUT`), its output a function's output; a
    namespaced call bears its model name."""
    if isinstance(item, FunctionCall) and (item.custom or item.namespace is not None):
        arguments = orjson.dumps({"input": item.arguments}).decode() if item.custom else item.arguments
        name = model_name(item.namespace, item.name)
        return replace(item, name=name, arguments=arguments, custom=False, namespace=None)
    if isinstance(item, FunctionCallOutput) and item.custom:
        return replace(item, custom=False)
    return item


def with_id(item: Item, new_id: str) -> Item:
    return item if isinstance(item, ItemReference) else replace(item, id=new_id)


def item_type(item: Item) -> str:
    return str(item.to_wire()["type"])


# --- parsing --------------------------------------------------------------------------------------


def parse_input(value: Any, param: str = "input") -> tuple[Item, ...]:
    """`input`: a string (one user message) or an array of items."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (Message(role="user", content=(TextPart("input_text", value),)),)
    if not isinstance(value, list):
        raise invalid_request(f"Invalid type for '{param}': expected a string or an array.", param)
    return tuple(parse_item(raw, f"{param}[{i}]", param) for i, raw in enumerate(value))


def parse_item(raw: Any, path: str, param: str = "input") -> Item:
    if not isinstance(raw, Mapping):
        raise _bad(path, "expected an object", param)
    kind = raw.get("type")
    if kind is None and "role" in raw:
        kind = "message"
    if kind == "message":
        return _parse_message(raw, path, param)
    if kind in ("function_call", "custom_tool_call"):
        custom = kind == "custom_tool_call"
        return FunctionCall(
            call_id=_string(raw, "call_id", path, param),
            name=_string(raw, "name", path, param),
            arguments=_string(raw, "input" if custom else "arguments", path, param),
            id=_optional_string(raw, "id", path, param),
            status=_optional_string(raw, "status", path, param),
            custom=custom,
            namespace=_optional_string(raw, "namespace", path, param),
        )
    if kind in ("function_call_output", "custom_tool_call_output"):
        output = raw.get("output")
        if not isinstance(output, str):
            output = _parse_parts(output, f"{path}.output", param, assistant=False)
        return FunctionCallOutput(
            call_id=_string(raw, "call_id", path, param),
            output=output,
            id=_optional_string(raw, "id", path, param),
            status=_optional_string(raw, "status", path, param),
            custom=kind == "custom_tool_call_output",
        )
    if kind == "item_reference":
        return ItemReference(id=_string(raw, "id", path, param))
    if kind == "compaction":
        return Compaction(
            encrypted_content=_string(raw, "encrypted_content", path, param),
            id=_optional_string(raw, "id", path, param),
        )
    if kind == "reasoning":
        return Reasoning(
            text=_reasoning_text(raw.get("content")),
            fields=tuple((k, v) for k, v in raw.items() if k not in ("type", "id")),
            id=_optional_string(raw, "id", path, param),
        )
    if kind in HOSTED_ITEM_TYPES:
        fields = tuple((k, v) for k, v in raw.items() if k not in ("type", "id"))
        call_id = raw.get("call_id")
        return OpaqueItem(
            type=str(kind),
            fields=fields,
            id=_optional_string(raw, "id", path, param),
            call_id=call_id if isinstance(call_id, str) else None,
        )
    if kind is None:
        raise _bad(path, "missing 'type' (or 'role' for a message)", param)
    raise _bad(path, f"unknown item type '{kind}'", param)


def _reasoning_text(content: Any) -> str:
    """The `reasoning_text` parts of a reasoning item's `content`, joined; leniently, anything
    else in it is no text (a client may replay the item however its SDK dumps it)."""
    if not isinstance(content, list):
        return ""
    parts = (part for part in content if isinstance(part, Mapping) and part.get("type") == "reasoning_text")
    return "".join(text for part in parts if isinstance(text := part.get("text"), str))


def _parse_message(raw: Mapping[str, Any], path: str, param: str) -> Message:
    role = raw.get("role")
    if role not in ROLES:
        raise _bad(f"{path}.role", f"expected one of {sorted(ROLES)}, got {role!r}", param)
    content = raw.get("content")
    parts: tuple[ContentPart, ...]
    if isinstance(content, str):
        parts = (TextPart("output_text" if role == "assistant" else "input_text", content),)
    else:
        parts = _parse_parts(content, f"{path}.content", param, assistant=role == "assistant")
    return Message(
        role=role,
        content=parts,
        id=_optional_string(raw, "id", path, param),
        status=_optional_string(raw, "status", path, param),
        phase=_optional_string(raw, "phase", path, param),
    )


def _parse_parts(value: Any, path: str, param: str, *, assistant: bool) -> tuple[ContentPart, ...]:
    if not isinstance(value, list):
        raise _bad(path, "expected a string or an array of content parts", param)
    parts: list[ContentPart] = []
    for i, raw in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(raw, Mapping):
            raise _bad(where, "expected an object", param)
        kind = raw.get("type")
        marked = _breakpoint(raw)
        if kind == "input_text":
            parts.append(TextPart(kind, _string(raw, "text", where, param), marked))
        elif kind == "output_text":
            parts.append(TextPart(kind, _string(raw, "text", where, param)))
        elif kind == "refusal":
            parts.append(TextPart("refusal", _string(raw, "refusal", where, param)))
        elif kind in ("input_image", "input_file"):
            fields = tuple((k, v) for k, v in raw.items() if k != "type")
            parts.append(AttachmentPart(kind, fields))
        else:
            raise _bad(where, f"unknown content part type {kind!r}", param)
    return tuple(parts)


def _breakpoint(raw: Mapping[str, Any]) -> bool:
    """Whether the part carries a `prompt_cache_breakpoint`: the SDK's `{"mode": "explicit",
    "ttl"?}`, or `true` as some clients send it; leniently, anything else is no breakpoint."""
    marker = raw.get("prompt_cache_breakpoint")
    return marker is True or isinstance(marker, Mapping)


def _string(raw: Mapping[str, Any], key: str, path: str, param: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        what = "missing" if value is None else f"expected a string, got {type(value).__name__}"
        raise _bad(f"{path}.{key}", what, param)
    return value


def _optional_string(raw: Mapping[str, Any], key: str, path: str, param: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad(f"{path}.{key}", f"expected a string, got {type(value).__name__}", param)
    return value


def _bad(path: str, what: str, param: str) -> ApiError:
    return invalid_request(f"Invalid '{path}': {what}.", param)
