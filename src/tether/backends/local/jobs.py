"""From a `Generation` to the exact tokens the engine will run (on the tokenizer thread).

A continuation whose parent's token record is known starts from those ids and renders only the
new items; anything else (no record, or other instructions or tools, which change the system
block) is rendered whole. Either way the prompt is checked against the context size here, so an
overflow is refused before the request waits for the model.
"""

from __future__ import annotations

from dataclasses import dataclass

from tether.backends.base import ContextOverflow, Generation
from tether.backends.local.batches import Span
from tether.backends.local.chatml import ChatML, forced_tools
from tether.backends.local.memory import TokenRecords

# Room a request without `max_output_tokens` must leave for the answer, or it is refused upfront.
MIN_OUTPUT_TOKENS = 64


@dataclass(frozen=True)
class Job:
    response_id: str
    parent_id: str | None
    cache_scope: str  # whose KV it may reuse (its tenant's)
    prompt: list[int]  # a warm-up's is the rendering only; a turn's opens the model's reply
    system_len: int
    reuses_parent: bool  # the prompt starts with the parent's token record
    parent_recorded: bool  # the parent's token record existed when the job was built
    singles: tuple[Span, ...]  # positions of the prompt first evaluated one at a time
    items: int  # context items the prompt covers
    budget: int  # most tokens the answer may take
    temperature: float
    top_p: float
    tool_call: bool  # the reply is a forced tool call (the prompt opened it)


def build(generation: Generation, chatml: ChatML, records: TokenRecords, n_ctx: int, *, opening: bool) -> Job:
    system = chatml.system(generation)
    parent = records.get(generation.parent_id)
    reuses = (
        parent is not None
        and parent.items <= len(generation.items)
        and parent.system_len == len(system)
        and parent.tokens[: len(system)].tolist() == system
    )
    if parent is not None and reuses:
        head, new_items = parent.tokens.tolist(), generation.items[parent.items :]
    else:
        head, new_items = system, generation.items
    prompt = head + chatml.items(new_items) + (chatml.opening(generation) if opening else [])
    wanted = generation.max_output_tokens
    needed = len(prompt) + (MIN_OUTPUT_TOKENS if wanted is None else wanted)
    if needed > n_ctx:
        raise ContextOverflow(n_ctx, needed)
    return Job(
        response_id=generation.response_id,
        parent_id=generation.parent_id,
        cache_scope=generation.cache_scope,
        prompt=prompt,
        system_len=len(system),
        reuses_parent=reuses,
        parent_recorded=parent is not None,
        singles=parent.singles if parent is not None and reuses else (),
        items=len(generation.items),
        budget=n_ctx - len(prompt) if wanted is None else wanted,
        temperature=generation.temperature,
        top_p=generation.top_p,
        tool_call=bool(forced_tools(generation)),
    )
