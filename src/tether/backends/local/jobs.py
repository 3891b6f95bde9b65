"""From a `Generation` to the exact tokens the engine will run (on the tokenizer thread).

With the built-in ChatML renderer (`build`), a prompt starts with the token record of a
conversation the engine already ran, found by id (the parent a continuation names) or else by
content (the record sharing the longest chain of blocks, `prefix.py`: a client that resends its
whole history), and renders only the items after it. Other instructions or tools change the
system block, so they share nothing. With a model's own chat template (`build_whole`), the prompt
is rendered whole, as a template may write a turn differently once another follows; the
scheduler still starts it from the longest token prefix a sequence or snapshot holds. Either way
the prompt is checked against the context size here, so an overflow is refused before the
request waits for the model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from tether.backends.base import ContextOverflow, Generation
from tether.backends.local.batches import Span, within
from tether.backends.local.chatml import Block, ChatML, forced_tools, item_block, system_text
from tether.backends.local.memory import TokenRecord, TokenRecords
from tether.backends.local.prefix import Mark, addresses
from tether.backends.local.template import Templated
from tether.backends.local.tool_formats import HERMES, ToolFormat

# Room a request without `max_output_tokens` must leave for the answer, or it is refused upfront.
MIN_OUTPUT_TOKENS = 64

# How a prompt's head was found: by the parent's id, by content, or not at all (rendered whole).
Found = Literal["id", "content", "none"]
# Where the head's conversation was left: on the same WebSocket connection, or not (another
# connection, or HTTP); "none" when nothing was found.
Left = Literal["same", "another", "none"]


@dataclass(frozen=True)
class Job:
    response_id: str
    parent_id: str | None
    cache_scope: str  # whose KV it may reuse (its tenant's)
    prompt: list[int]  # a warm-up's is the rendering only; a turn's opens the model's reply
    system_len: int
    found: Found
    left: Left
    origin: str | None  # the connection it came on (`Generation.origin`)
    parent_recorded: bool  # the parent's token record existed when the job was built
    singles: tuple[Span, ...]  # positions of the prompt first evaluated one at a time
    marks: tuple[Mark, ...]  # the address of each block of the prompt, and where it ends
    addressed: bool  # marks cover every block of the prompt, so the reply's may follow them
    items: int  # context items the prompt covers
    budget: int  # most tokens the answer may take
    temperature: float
    top_p: float
    tool_call: bool  # the reply is a forced tool call (the prompt opened it)
    free_calls: bool  # the reply is free and may call tools (`tool_choice: "auto"`)
    one_call: bool  # it ends once it made a call (`parallel_tool_calls: false`)
    tool_format: ToolFormat  # how the model writes a call
    thinking: bool  # the prompt opened the model's turn in its thinking (`<think>`)
    cache_ttl_s: float  # how long its conversation is to be kept at least (`ttl`)
    # Explicit caching: the tokens and items of the prefix kept, up to the end of its last
    # marked message (0: nothing); None: the whole conversation is kept, its reply too.
    kept: tuple[int, int] | None

    def written(self, cached: int) -> int:
        """The tokens it adds to the cache, `cached` of its prompt having been found there."""
        kept = len(self.prompt) if self.kept is None else self.kept[0]
        return max(0, kept - cached)


@dataclass(frozen=True)
class _Head:
    """The start of a prompt taken from a token record, and what is left to render."""

    tokens: list[int]
    marks: tuple[Mark, ...]
    singles: tuple[Span, ...]
    rest: int  # index of the first context item still to render
    found: Found
    origin: str | None  # the connection the head's record was made on


def build(generation: Generation, chatml: ChatML, records: TokenRecords, n_ctx: int, *, opening: bool) -> Job:
    system_block = Block("system", system_text(generation))
    system = chatml.block(system_block)
    rendered = [(i, b) for i, item in enumerate(generation.items) if (b := item_block(item)) is not None]
    chain = addresses(generation.cache_scope, [system_block, *(b for _, b in rendered)])
    parent = records.get(generation.parent_id)
    head = _by_id(parent, generation, system) or _by_content(records, chain, rendered)
    if head is None:
        head = _Head(system, ((chain[0], len(system)),), (), 0, "none", None)
    prompt, marks = list(head.tokens), list(head.marks)
    ends: dict[int, int] = {}  # where the block of each item rendered here ends
    # The head's marks go on with this request's addresses only where they are its own chain.
    before = 1 + sum(1 for index, _ in rendered if index < head.rest)
    extends = len(marks) == before <= len(chain) and marks[-1][0] == chain[before - 1]
    for index, block in rendered:
        if index < head.rest:
            continue
        prompt += chatml.block(block)
        ends[index] = len(prompt)
        if extends:
            marks.append((chain[len(marks)], len(prompt)))
    prompt += chatml.opening(generation) if opening else []
    return _job(generation, n_ctx, prompt, len(system), head, parent is not None, tuple(marks), extends,
                _kept(generation, head, ends), thinking=False, tool_format=HERMES)  # fmt: skip


def build_whole(generation: Generation, templated: Templated, n_ctx: int, *, opening: bool) -> Job:
    """The prompt of `generation` rendered whole with the model's template."""
    prompt = templated.render(generation, opening).tokens
    head = _Head([], (), (), 0, "none", None)
    kept = _kept_whole(generation, templated, prompt)
    return _job(
        generation,
        n_ctx,
        prompt,
        0,
        head,
        True,
        (),
        False,
        kept,
        thinking=opening and templated.opens_thinking,
        tool_format=templated.tool_format,
    )


def _job(
    generation: Generation,
    n_ctx: int,
    prompt: list[int],
    system_len: int,
    head: _Head,
    parent_recorded: bool,
    marks: tuple[Mark, ...],
    addressed: bool,
    kept: tuple[int, int] | None,
    *,
    thinking: bool,
    tool_format: ToolFormat,
) -> Job:
    wanted = generation.max_output_tokens
    needed = len(prompt) + (MIN_OUTPUT_TOKENS if wanted is None else wanted)
    if needed > n_ctx:
        raise ContextOverflow(n_ctx, needed)
    return Job(
        response_id=generation.response_id,
        parent_id=generation.parent_id,
        cache_scope=generation.cache_scope,
        prompt=prompt,
        system_len=system_len,
        found=head.found,
        left=_left(head, generation.origin),
        origin=generation.origin,
        parent_recorded=parent_recorded,
        singles=head.singles,
        marks=marks,
        addressed=addressed,
        items=len(generation.items),
        budget=n_ctx - len(prompt) if wanted is None else wanted,
        temperature=generation.temperature,
        top_p=generation.top_p,
        tool_call=bool(forced_tools(generation)),
        free_calls=generation.tool_choice.mode == "auto"
        and bool(generation.tool_choice.allowed(generation.tools)),
        one_call=not generation.parallel_tool_calls,
        cache_ttl_s=generation.cache_ttl_s,
        kept=kept,
        thinking=thinking,
        tool_format=tool_format,
    )


def _by_id(parent: TokenRecord | None, generation: Generation, system: list[int]) -> _Head | None:
    """The parent's whole record, when it is this request's history: the same system block and
    no more items than the request has (the chain's resolution guarantees the rest)."""
    if (
        parent is None
        or parent.items > len(generation.items)
        or parent.system_len != len(system)
        or parent.tokens[: len(system)].tolist() != system
    ):
        return None
    return _Head(parent.tokens.tolist(), parent.marks, parent.singles, parent.items, "id", parent.origin)


def _by_content(records: TokenRecords, chain: list[bytes], rendered: list[tuple[int, Block]]) -> _Head | None:
    """The start of the record sharing the longest chain of blocks with the request. A chain of
    the system block alone is a hit too: agents that share instructions and tools share it."""
    found = records.longest(chain)
    if found is None:
        return None
    record, shared = found
    end = record.marks[shared - 1][1]
    rest = rendered[shared - 2][0] + 1 if shared > 1 else 0  # the system block is no item
    singles = within(record.singles, end)
    return _Head(record.tokens[:end].tolist(), record.marks[:shared], singles, rest, "content", record.origin)


def _kept(generation: Generation, head: _Head, ends: dict[int, int]) -> tuple[int, int] | None:
    """What explicit caching keeps: the prefix to the end of the last marked message (a mark
    inside the head, which the cache already held, keeps the head)."""
    items = generation.kept_items
    if items is None or items == 0:
        return None if items is None else (0, 0)
    return ends.get(items - 1, len(head.tokens)), items


def _kept_whole(generation: Generation, templated: Templated, prompt: list[int]) -> tuple[int, int] | None:
    """What explicit caching keeps of a prompt rendered whole: the rendering of the items up to
    the last marked message, where it is a prefix of the prompt (else nothing)."""
    items = generation.kept_items
    if items is None or items == 0:
        return None if items is None else (0, 0)
    shorter = templated.render(replace(generation, items=generation.items[:items]), opening=False).tokens
    return (len(shorter), items) if prompt[: len(shorter)] == shorter else (0, 0)


def _left(head: _Head, origin: str | None) -> Left:
    if head.found == "none":
        return "none"
    return "same" if origin is not None and head.origin == origin else "another"
