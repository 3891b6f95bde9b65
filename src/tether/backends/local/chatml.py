"""Render a `Generation` as SmolLM2's ChatML: typed items in, token ids out.

The rendering is append-only: every block is tokenised on its own and the token lists are
concatenated, so the tokens for a conversation's first k items are always a prefix of the tokens
for the whole conversation. That is what lets llama.cpp reuse the KV of the previous turn.

Within a block only the framing (`<|im_start|>role\\n`, `<|im_end|>\\n`) is tokenised with special
tokens parsed; the content is tokenised as plain text, so a message that contains the string
`<|im_end|>` cannot close its block early.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from tether.backends.base import Generation
from tether.backends.local.tool_formats import HERMES
from tether.protocol.items import (
    Compaction,
    FunctionCall,
    FunctionCallOutput,
    Item,
    ItemReference,
    Message,
    OpaqueItem,
    Reasoning,
    Role,
)
from tether.protocol.tools import FunctionTool

# What SmolLM2's own chat template puts in the system block when the caller gives none.
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# Opens the model's turn. A forced tool call additionally opens the call, so the grammar only has
# to produce the JSON and the turn reads exactly like the format the system block describes.
ASSISTANT_HEADER = "<|im_start|>assistant\n"
END_OF_TURN = "<|im_end|>\n"

ChatRole = Literal["system", "user", "assistant"]
# ChatML has no developer role; the model reads developer messages as system ones.
_CHAT_ROLES: dict[Role, ChatRole] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}


@dataclass(frozen=True)
class Block:
    role: ChatRole
    content: str

    @property
    def header(self) -> str:
        return f"<|im_start|>{self.role}\n"

    @property
    def footer(self) -> str:
        return END_OF_TURN


class Vocab(Protocol):
    """The slice of `llama_cpp.Llama` the renderer needs."""

    def tokenize(self, text: bytes, add_bos: bool = ..., special: bool = ...) -> list[int]: ...

    def token_eos(self) -> int: ...


def forced_tools(generation: Generation) -> tuple[FunctionTool, ...]:
    """The tools one of which the model must call, or () when it answers freely."""
    if generation.tool_choice.mode != "required":
        return ()
    return generation.tool_choice.allowed(generation.tools)


def blocks(generation: Generation) -> Iterator[Block]:
    """The system block, then one block per renderable item, oldest first."""
    yield Block("system", system_text(generation))
    for item in generation.items:
        block = item_block(item)
        if block is not None:
            yield block


def to_text(rendered: Iterable[Block]) -> str:
    return "".join(b.header + b.content + b.footer for b in rendered)


def system_text(generation: Generation) -> str:
    # Every offered tool is described whatever `tool_choice` says (the grammar enforces the
    # choice): agents flip `required` to `auto` between turns, and a system block that changed
    # with it would throw the whole cached prefix away.
    tools = generation.tools
    parts = [p for p in (generation.instructions, _tools_text(tools) if tools else None) if p]
    return "\n\n".join(parts) if parts else DEFAULT_SYSTEM


class ChatML:
    """Token-level rendering against one model's vocabulary."""

    family = "chatml"  # the prompt format, as `/v1/models` names it
    tool_format = HERMES  # Tether's own tool text teaches Hermes' call format
    markup_tokens: frozenset[int] = frozenset()  # its markup is plain text

    def __init__(self, vocab: Vocab) -> None:
        self._vocab = vocab
        # The model closes its turn with <|im_end|>; a vocabulary without that token (a model
        # trained on another format, rendered as ChatML for want of a template) ends with EOS.
        end = self._special("<|im_end|>")
        self.end_of_turn = end[0] if len(end) == 1 else vocab.token_eos()

    def render(self, generation: Generation) -> list[int]:
        """The system block and every item: what a warm-up prefills."""
        return self.system(generation) + self.items(generation.items)

    def prompt(self, generation: Generation) -> list[int]:
        """`render` plus the opening of the assistant turn the model is to write."""
        return self.render(generation) + self.opening(generation)

    def system(self, generation: Generation) -> list[int]:
        return self.block(Block("system", system_text(generation)))

    def items(self, items: Iterable[Item]) -> list[int]:
        tokens: list[int] = []
        for item in items:
            block = item_block(item)
            if block is not None:
                tokens += self.block(block)
        return tokens

    def opening(self, generation: Generation) -> list[int]:
        """Opens the model's turn; a forced tool call also opens the call."""
        tokens = self._special(ASSISTANT_HEADER)
        if forced_tools(generation):
            tokens += self._plain(HERMES.open)
        return tokens

    def closing(self, tool_call: bool) -> list[int]:
        """What follows the model's own tokens to close its turn as the rendering would."""
        tokens = self._plain(HERMES.close) if tool_call else []
        return tokens + self._special(END_OF_TURN)

    def block(self, block: Block) -> list[int]:
        return self._special(block.header) + self._plain(block.content) + self._special(block.footer)

    def _special(self, text: str) -> list[int]:
        return list(self._vocab.tokenize(text.encode(), add_bos=False, special=True))

    def _plain(self, text: str) -> list[int]:
        if not text:
            return []
        return list(self._vocab.tokenize(text.encode(), add_bos=False, special=False))


def item_block(item: Item) -> Block | None:
    if isinstance(item, Message):
        return Block(_CHAT_ROLES[item.role], item.text)
    if isinstance(item, FunctionCall):
        return Block("assistant", tool_call_text(item.name, item.arguments))
    if isinstance(item, FunctionCallOutput):
        return Block("user", f"<tool_response>\n{item.text}\n</tool_response>")
    if isinstance(item, Reasoning | OpaqueItem):
        return None  # thinking (until templates render it) and hosted-tool records are not shown
    if isinstance(item, ItemReference | Compaction):
        raise TypeError(f"{type(item).__name__} must be resolved before it reaches a backend")
    raise TypeError(f"cannot render {type(item).__name__}")


def tool_call_text(name: str, arguments: str) -> str:
    """A call as the model is taught to write it; unparseable arguments are kept verbatim."""
    try:
        body = json.dumps({"name": name, "arguments": json.loads(arguments)}, ensure_ascii=False)
    except ValueError:
        body = f'{{"name": {json.dumps(name, ensure_ascii=False)}, "arguments": {arguments}}}'
    return f"{HERMES.open}{body}{HERMES.close}"


def _tools_text(tools: tuple[FunctionTool, ...]) -> str:
    signatures = "\n".join(
        json.dumps(
            {"name": t.name, "description": t.description or "", "parameters": dict(t.parameters)},
            ensure_ascii=False,
        )
        for t in tools
    )
    return (
        "# Tools\n\n"
        "You may call one of the functions below. Each line inside <tools></tools> describes one "
        "function: its name, what it does, and a JSON schema of its arguments.\n"
        f"<tools>\n{signatures}\n</tools>\n\n"
        "To call a function, answer with only this, the arguments forming a JSON object:\n"
        '<tool_call>\n{"name": "<function name>", "arguments": {<arguments>}}\n</tool_call>'
    )
