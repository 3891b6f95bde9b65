"""Why a turn did or did not reuse the cache of a response it names (`prompt_cache_diagnostics`).

A request's *shape* is what its prompt is made of, as digests: the model, the tools, and a chain
of block digests — the system block (instructions and tools), then each item of the context in
order (what of it a prompt can show), each digest chained to the one before. A response's
shape, once it has ended, goes on with its output items: that is what a continuation can reuse.

Comparing a request with the response it names (`prompt_cache_options.comparison_response_id`):
- its chain starts with the whole chain of that response, same model: `cache_hit`;
- else `cache_miss`, with the first reason that explains it: `model_changed` (another model's
  cache is another cache), `tools_changed`, `context_compacted` (the input carries a compacted
  window), `input_changed` (the instructions or an earlier item differ); and the tokens: what
  this request prefilled again (`cache_missed_tokens`: input less cached, from its usage) and
  what it reused (`comparison_reusable_tokens`);
- a response this process never shaped, or another tenant's: `comparison_response_not_found`,
  or `unavailable` when it exists (in the store) but its shape is not here.

Tether's caches are addressed by content within a tenant, not by `prompt_cache_key`, and the
settings that do not change the prompt (text format, reasoning effort, verbosity, service tier)
change nothing cached: none of them is a reason here. Only digests and counts are kept — nothing
of a conversation's text — for the latest `SHAPES_KEPT` responses.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from hashlib import blake2b

import orjson

from tether.backends.base import Generation
from tether.protocol.items import Compaction, FunctionCall, FunctionCallOutput, Item, Message
from tether.protocol.prompt_cache import Diagnostics
from tether.protocol.response import Usage

SHAPES_KEPT = 10_000  # responses whose shape is kept (~16 bytes a block: a few MB in all)
_DIGEST_BYTES = 16


@dataclass(frozen=True)
class Shape:
    model: str
    tools: bytes
    chain: tuple[bytes, ...]  # the system block's digest, then each item's, chained
    compacted: bool  # its input carried a compacted window


def shape_of(generation: Generation, input_items: Sequence[Item], parent: Shape | None) -> Shape:
    """The shape of the prompt `generation` renders; `input_items`: its request's own input;
    `parent`: the shape of the response it continues, when known, whose chain it extends with
    the new items only (a turn's cost stays that of what is new)."""
    tools = _digest(
        b"", orjson.dumps([tool.to_wire() for tool in generation.tools], option=orjson.OPT_SORT_KEYS)
    )
    system = _digest(tools, (generation.instructions or "").encode())
    compacted = any(isinstance(item, Compaction) for item in input_items)
    items = generation.items
    if parent is not None and parent.chain[0] == system and len(parent.chain) - 1 <= len(items):
        # The chain's resolution put the parent's context and output first.
        chain = _chained(parent.chain, items[len(parent.chain) - 1 :])
    else:
        chain = _chained((system,), items)
    return Shape(generation.model, tools, chain, compacted)


def extended(shape: Shape, output: Iterable[Item]) -> Shape:
    """The shape of what a continuation can reuse: the prompt's, then the output's items."""
    return replace(shape, chain=_chained(shape.chain, output))


def diagnose(shape: Shape, comparison: Shape, usage: Usage) -> Diagnostics:
    shared = 0
    for mine, theirs in zip(shape.chain, comparison.chain, strict=False):
        if mine != theirs:
            break
        shared += 1
    if shape.model == comparison.model and shared == len(comparison.chain):
        return Diagnostics("cache_hit")
    if shape.model != comparison.model:
        reason = "model_changed"
    elif shape.tools != comparison.tools:
        reason = "tools_changed"
    elif shape.compacted and shared > 0:
        reason = "context_compacted"
    else:
        reason = "input_changed"
    missed = usage.input_tokens - usage.cached_tokens
    return Diagnostics("cache_miss", reason, reusable=usage.cached_tokens, missed=missed)


class Shapes:
    """The shapes of the latest responses, by tenant and id."""

    def __init__(self, kept: int = SHAPES_KEPT) -> None:
        self.kept = kept
        self._shapes: OrderedDict[tuple[str, str], Shape] = OrderedDict()

    def put(self, tenant: str, response_id: str, shape: Shape) -> None:
        self._shapes[tenant, response_id] = shape
        self._shapes.move_to_end((tenant, response_id))
        while len(self._shapes) > self.kept:
            self._shapes.popitem(last=False)

    def get(self, tenant: str, response_id: str) -> Shape | None:
        return self._shapes.get((tenant, response_id))


def _chained(start: tuple[bytes, ...], items: Iterable[Item]) -> tuple[bytes, ...]:
    """`start` followed by the digest of each item, chained (one per item, so that a chain's
    length tells how many items it covers)."""
    chain, digest = list(start), start[-1]
    for item in items:
        digest = _digest(digest, _content(item))
        chain.append(digest)
    return tuple(chain)


def _content(item: Item) -> bytes:
    """What of an item can reach a prompt: never its id or status."""
    if isinstance(item, Message):
        return orjson.dumps(["message", item.role, item.text])
    if isinstance(item, FunctionCall):
        return orjson.dumps(["function_call", item.call_id, item.name, item.arguments])
    if isinstance(item, FunctionCallOutput):
        return orjson.dumps(["function_call_output", item.call_id, item.text])
    return orjson.dumps(item.to_wire(), option=orjson.OPT_SORT_KEYS)


def _digest(previous: bytes, content: bytes) -> bytes:
    h = blake2b(previous, digest_size=_DIGEST_BYTES)
    h.update(content)
    return h.digest()
