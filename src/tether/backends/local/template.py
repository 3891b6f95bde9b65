"""A model's own chat template: the GGUF's `tokenizer.chat_template`, or `--chat-template`.

Rendered as the reference implementations render Hugging Face templates (transformers,
llama-cpp-python's `Jinja2ChatFormatter`): a sandboxed, immutable Jinja environment with
`trim_blocks` and `lstrip_blocks`, the `raise_exception` and `strftime_now` helpers, a `tojson`
that keeps non-ASCII text as it is, and the model's `bos_token` and `eos_token`.

`Templated` turns a `Generation` into tokens with it. A Hermes-style template (one that writes
`<tool_call>` and reads `tool_calls`: Qwen 2.5 and 3, Hermes 2 and 3) is given the tools, each
assistant turn's calls and each tool's result, and writes them itself; any other gets Tether's
own tool text (`chatml.system_text`, `chatml.item_block`) in plain turns. Each message's content
is rendered as a marker and tokenized on its own as plain text, the template's markup around it
with special tokens parsed, so a message that contains `<end_of_turn>` cannot end its turn early
(the ChatML renderer does the same block by block).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from llama_cpp import Llama

from tether.backends.base import BackendError, Generation
from tether.backends.local.answers import THINK
from tether.backends.local.chatml import (
    ASSISTANT_HEADER,
    Block,
    ChatML,
    Vocab,
    forced_tools,
    item_block,
    system_text,
    to_text,
)
from tether.backends.local.tool_formats import HERMES, MISTRAL, PHI4_MINI, ToolFormat, native_format
from tether.protocol.items import FunctionCall, FunctionCallOutput, Message, Reasoning

Json = dict[str, Any]
METADATA_KEY = "tokenizer.chat_template"
CHATML = "chatml"  # the setting that asks for the built-in ChatML renderer
BUILT_IN = Path(__file__).parent / "templates"  # templates of ours, by name
# Text whose tokens are kept for the next renderings (`_Pieces`): a few long conversations' worth.
PIECES_CACHE_CHARS = 4_000_000
# Markers a content is rendered as: private-use characters no template writes.
_MARK = "\ue000{}\ue001"
_MARKS = re.compile("\ue000(\\d+)\ue001")
# Markup that tells a template's family (for `/v1/models` and the tool-call formats to come).
_FAMILIES = (
    ("<|im_start|>", "chatml"),
    ("<start_of_turn>", "gemma"),
    ("<|start_header_id|>", "llama3"),
    ("[INST]", "mistral"),
    ("<|end|>", "phi3"),
)


class TemplateError(BackendError):
    """The template refused the conversation (its `raise_exception`) or failed on it."""


def source(metadata: dict[str, str], setting: str | None) -> str | None:
    """The template to render with, None for the built-in ChatML: what `--chat-template` names
    (`chatml`, one of ours by name, or a file), else the model file's own. Raises OSError for a
    file that cannot be read."""
    if setting is None:
        return metadata.get(METADATA_KEY) or None
    if setting == CHATML:
        return None
    ours = BUILT_IN / f"{setting}.jinja"
    return (ours if ours.is_file() else Path(setting)).read_text()


def prompt_format(llm: Llama, setting: str | None) -> ChatML | Templated:
    """How the engine renders prompts for `llm`: with its template (`source`), except where that
    template is ChatML exactly as the built-in renderer writes it and takes no tools (SmolLM2's):
    then with the built-in one, which renders block by block (`jobs.build`)."""
    text = source(llm.metadata, setting)
    if text is None:
        return ChatML(llm)
    bos, eos = llm.token_bos(), llm.token_eos()
    template = ChatTemplate(text, _token_text(llm, bos), _token_text(llm, eos))
    add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token") == "true"
    templated = Templated(template, llm, add_bos, bos, eos)
    return ChatML(llm) if not templated.native_tools and templated.writes_chatml() else templated


def _token_text(llm: Llama, token: int) -> str:
    return llm.detokenize([token], special=True).decode(errors="replace") if token >= 0 else ""


def family(template: str) -> str:
    return next((name for markup, name in _FAMILIES if markup in template), "other")


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class ChatTemplate:
    def __init__(self, template: str, bos_token: str, eos_token: str) -> None:
        self.source = template
        environment = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
        )
        environment.filters["tojson"] = _tojson
        environment.globals.update(raise_exception=_raise, strftime_now=_strftime_now)
        try:
            self._template = environment.from_string(template)
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"the chat template does not parse: {exc}") from None
        self._tokens = {"bos_token": bos_token, "eos_token": eos_token}

    def render(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        try:
            return self._template.render(
                messages=messages, tools=tools, add_generation_prompt=add_generation_prompt, **self._tokens
            )
        except jinja2.TemplateError as exc:
            raise TemplateError(f"the model's chat template refused the conversation: {exc}") from None


@dataclass(frozen=True)
class Rendered:
    """A conversation's tokens, and the text they are (for comparisons)."""

    tokens: list[int]
    text: str


class Templated:
    """Token-level rendering with a chat template, the whole conversation at a time."""

    def __init__(self, template: ChatTemplate, vocab: Vocab, add_bos: bool, bos: int, eos: int) -> None:
        self.template = template
        self.family = family(template.source)  # the prompt format, as `/v1/models` names it
        # Templates that write the tools, the calls and their results themselves, in a format
        # Tether knows (`tool_formats.py`); any other is given Tether's own tool text.
        native = native_format(template.source)
        self.native_tools = native is not None
        self.tool_format = native or HERMES
        self._pieces = _Pieces(vocab)
        # The format's markup that is a special token of the model (Mistral's [TOOL_CALLS],
        # FunctionGemma's <escape>): the engine keeps it in the answer's text, where special
        # tokens are otherwise dropped.
        self.markup_tokens = frozenset(
            tokens[0]
            for text in self.tool_format.markup
            if len(tokens := self._special(text)) == 1 and self._is_control(text, tokens[0])
        )
        self._bos = bos if add_bos else None
        # Thinking models' templates may open the model's turn in its thinking (`<think>`).
        self.opens_thinking = self._opening_text().rstrip().endswith(THINK)
        closing = self._closing_text()
        closed = self._special(closing)
        # What follows the model's own tokens to close its turn, after a forced call or not.
        # Made here: `closing` is asked on the model thread, and `_pieces` is the tokenizer's.
        self._closings = (closed, self._special(self.tool_format.close) + closed)
        # The model ends its turn with the token the template closes a turn with, when that is
        # a token of its own (Gemma's <end_of_turn>, ChatML's <|im_end|>), else with its EOS.
        self.end_of_turn = closed[0] if closed and self._is_control(closing, closed[0]) else eos

    def render(self, generation: Generation, opening: bool) -> Rendered:
        """The conversation; with `opening`, the model's turn opened as well (and a forced
        tool call with it)."""
        if self.native_tools:
            rendered = self._marked(*_native(generation, self.tool_format), opening)
        else:
            blocks = [
                Block("system", system_text(generation)),
                *filter(None, map(item_block, generation.items)),
            ]
            rendered = self._from_blocks(blocks, opening)
        opened = self.tool_format.open
        if opening and forced_tools(generation) and opened:
            rendered = Rendered(rendered.tokens + self._special(opened), rendered.text + opened)
        return rendered

    def writes_chatml(self) -> bool:
        """Whether the template writes a conversation as the built-in ChatML renderer does."""
        probe = [Block("system", "S"), Block("user", "U"), Block("assistant", "A"), Block("user", "V")]
        return self._from_blocks(probe, opening=True).text == to_text(probe) + ASSISTANT_HEADER

    def closing(self, tool_call: bool) -> list[int]:
        """What follows the model's own tokens to close its turn as the template would."""
        return list(self._closings[tool_call])

    def _from_blocks(self, blocks: list[Block], opening: bool) -> Rendered:
        """The blocks as turns of their roles, with Tether's own tool text (`chatml`)."""
        try:
            return self._marked(*_marked_blocks(blocks), None, opening)
        except TemplateError:
            # Some templates refuse two turns of one role in a row (each tool call is a turn of
            # its own here): such turns are joined, as those templates expect.
            return self._marked(*_marked_blocks(_joined(blocks)), None, opening)

    def _marked(
        self,
        messages: list[Json],
        contents: list[str],
        tools: list[Json] | None,
        opening: bool,
    ) -> Rendered:
        """`messages`, whose contents are markers of `contents`, rendered and tokenized."""
        marked = self.template.render(messages, add_generation_prompt=opening, tools=tools)
        tokens: list[int] = []
        text: list[str] = []
        for i, piece in enumerate(_MARKS.split(marked)):
            if i % 2:
                tokens += self._plain(contents[int(piece)])
                text.append(contents[int(piece)])
            else:
                tokens += self._special(piece)
                text.append(piece)
        if self._bos is not None and tokens[:1] != [self._bos]:
            tokens.insert(0, self._bos)
        return Rendered(tokens, "".join(text))

    def _opening_text(self) -> str:
        """What the template writes to open the model's turn."""
        messages = [{"role": "user", "content": _MARK.format(0)}]
        opened = self.template.render(messages, add_generation_prompt=True)
        return opened[len(self.template.render(messages, add_generation_prompt=False)) :]

    def _closing_text(self) -> str:
        """What the template writes after an assistant's content, up to the next turn."""
        mark = _MARK.format(1)
        messages = [{"role": "user", "content": _MARK.format(0)}, {"role": "assistant", "content": mark}]
        rendered = self.template.render(messages, add_generation_prompt=False)
        return rendered[rendered.index(mark) + len(mark) :]

    def _is_control(self, text: str, token: int) -> bool:
        """Whether `token`, first of `text`, is one the plain tokenization of `text` lacks."""
        return token not in self._plain(text)[:1]

    def _special(self, text: str) -> list[int]:
        return self._pieces.tokens(text, special=True)

    def _plain(self, text: str) -> list[int]:
        return self._pieces.tokens(text, special=False)


class _Pieces:
    """The tokens of the pieces of recent renderings (markup, contents). Each turn renders the
    whole conversation again, and a llama.cpp tokenize call costs about 0.16 ms whatever its
    length with Gemma 3's vocabulary (it scans its 6,400 special tokens): 1,600 calls were 0.26 s
    of a 0.29 s rendering of 800 items, 53 ms at 200 items (8,900 tokens) against 2.7 ms with
    the pieces kept. Only the tokenizer thread uses it."""

    def __init__(self, vocab: Vocab) -> None:
        self._vocab = vocab
        self._cache: OrderedDict[tuple[str, bool], list[int]] = OrderedDict()  # oldest use first
        self._chars = 0

    def tokens(self, text: str, special: bool) -> list[int]:
        """`text`'s tokens (a list the caller must not change)."""
        key = (text, special)
        tokens = self._cache.get(key)
        if tokens is not None:
            self._cache.move_to_end(key)
            return tokens
        tokens = list(self._vocab.tokenize(text.encode(), add_bos=False, special=special)) if text else []
        self._cache[key] = tokens
        self._chars += len(text)
        while self._chars > PIECES_CACHE_CHARS:
            (old, _), _ = self._cache.popitem(last=False)
            self._chars -= len(old)
        return tokens


class _Contents:
    """The contents of a conversation's messages, each rendered as a marker of its index."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def mark(self, text: str) -> str:
        """The marker of `text`; an empty text stays empty (templates test a content's truth)."""
        if not text:
            return ""
        self.texts.append(text)
        return _MARK.format(len(self.texts) - 1)


def _marked_blocks(blocks: list[Block]) -> tuple[list[Json], list[str]]:
    contents = _Contents()
    return [{"role": block.role, "content": contents.mark(block.content)} for block in blocks], contents.texts


def _native(generation: Generation, format: ToolFormat) -> tuple[list[Json], list[str], list[Json] | None]:
    """The conversation as a template that writes tools and calls takes it: the instructions as
    the system message, each assistant turn's calls in its `tool_calls` and the thinking before
    it in its `reasoning_content`, each result a `tool` message, and the tools as functions.
    Phi-4-mini's takes the tools as the system message's `tools` and the calls as the text."""
    messages: list[Json] = []
    if generation.instructions:
        messages.append({"role": "system", "content": generation.instructions})
    thinking = ""  # what the model thought before the assistant message to come
    names: dict[str, str] = {}  # each call's function, by call id (FunctionGemma's results say it)

    def assistant(content: str) -> Json:
        message: Json = {"role": "assistant", "content": content}
        if thinking:
            message["reasoning_content"] = thinking
        return message

    for item in generation.items:
        if isinstance(item, Reasoning):
            thinking = item.text
            continue
        if isinstance(item, Message) and item.role == "assistant":
            messages.append(assistant(item.text))
        elif isinstance(item, Message):
            role = "system" if item.role == "developer" else item.role
            messages.append({"role": role, "content": item.text})
        elif isinstance(item, FunctionCall):
            names[item.call_id] = item.name
            call = {"id": _call_id(item.call_id, format), "type": "function",
                    "function": {"name": item.name, "arguments": _arguments(item.arguments)}}  # fmt: skip
            if not (messages and messages[-1]["role"] == "assistant"):  # else its text, or calls before it
                messages.append(assistant(""))
            messages[-1].setdefault("tool_calls", []).append(call)
        elif isinstance(item, FunctionCallOutput):
            messages.append({"role": "tool", "tool_call_id": _call_id(item.call_id, format),
                             "name": names.get(item.call_id, ""), "content": item.text})  # fmt: skip
        thinking = ""
    functions = [{"name": tool.name, "description": tool.description or "",
                  "parameters": dict(tool.parameters)} for tool in generation.tools]  # fmt: skip
    if format is PHI4_MINI:
        _calls_as_text(messages, functions)
    contents = _Contents()
    for message in messages:
        for key in ("content", "reasoning_content"):
            if key in message:
                message[key] = contents.mark(message[key])
    tools = [{"type": "function", "function": function} for function in functions]
    return messages, contents.texts, tools or None


def _calls_as_text(messages: list[Json], functions: list[Json]) -> None:
    """Phi-4-mini's way: the tools as JSON in the system message, the calls in the text."""
    if functions:
        if not (messages and messages[0]["role"] == "system"):
            messages.insert(0, {"role": "system", "content": ""})
        messages[0]["tools"] = json.dumps(functions, ensure_ascii=False)
    for message in messages:
        calls = [call["function"] for call in message.pop("tool_calls", [])]
        if calls:
            written = [json.dumps({"name": call["name"], "arguments": call["arguments"]}, ensure_ascii=False)
                       for call in calls]  # fmt: skip
            message["content"] += f"{PHI4_MINI.open}[{PHI4_MINI.separator.join(written)}]"


def _call_id(call_id: str, format: ToolFormat) -> str:
    """A call's id as the template takes it: Mistral's insist on nine letters and digits, which
    a digest of the id gives (the same for the call and its result)."""
    return hashlib.sha256(call_id.encode()).hexdigest()[:9] if format is MISTRAL else call_id


def _arguments(arguments: str) -> Any:
    """A call's arguments as templates write them (`tojson` of an object), when they are one."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    return value if isinstance(value, dict) else arguments


def _joined(blocks: Iterable[Block]) -> list[Block]:
    joined: list[Block] = []
    for block in blocks:
        if joined and joined[-1].role == block.role:
            joined[-1] = Block(block.role, f"{joined[-1].content}\n{block.content}")
        else:
            joined.append(block)
    return joined
