"""What a request's context is: the chain behind `previous_response_id` plus the new input.

Resolution order (spec §4.1.2 phase 2): the parent (§8.3), then `item_reference` and `compaction`
items in the input, then every tool output's `call_id` against the chain and the earlier input
(D10). Each failure is an `ApiError` raised before any response exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tether.protocol import compaction, errors, ids
from tether.protocol.items import (
    Compaction,
    FunctionCall,
    FunctionCallOutput,
    Item,
    ItemReference,
    OpaqueItem,
    item_type,
    parse_item,
    with_id,
)
from tether.store.base import Store

# A parent must have finished to be continued; failed and cancelled ones never can (§8.3).
CHAINABLE_STATUSES = frozenset({"completed", "incomplete"})
UNFINISHED_STATUSES = frozenset({"queued", "in_progress"})


@dataclass(frozen=True)
class Context:
    """`history` is the chain's items; `input` is this request's own, resolved and with ids."""

    history: tuple[Item, ...]
    input: tuple[Item, ...]

    @property
    def items(self) -> tuple[Item, ...]:
        return self.history + self.input


async def resolve(previous_response_id: str | None, new_input: tuple[Item, ...], store: Store) -> Context:
    history = await _history(previous_response_id, store) if previous_response_id else ()
    resolved = await _expand(new_input, store)
    check_call_ids(history, resolved)
    return Context(history=history, input=tuple(_with_ids(resolved)))


async def _history(response_id: str, store: Store) -> tuple[Item, ...]:
    parent = await store.get(response_id)
    if parent is None or parent.get("status") not in CHAINABLE_STATUSES:
        if parent is not None and parent.get("status") in UNFINISHED_STATUSES:
            raise errors.invalid_request(
                f"Previous response with id '{response_id}' has not finished yet.",
                "previous_response_id",
            )
        raise errors.previous_response_not_found(response_id)
    chain = await store.chain_items(response_id)
    if chain is None:
        raise errors.previous_response_not_found(response_id)
    return tuple(parse_item(raw, f"stored item {i}") for i, raw in enumerate(chain))


async def _expand(new_input: tuple[Item, ...], store: Store) -> list[Item]:
    items: list[Item] = []
    for item in new_input:
        if isinstance(item, ItemReference):
            stored = await store.find_item(item.id)
            if stored is None:
                raise errors.invalid_request(
                    f"Item with id '{item.id}' not found in stored responses.", "input"
                )
            items.append(parse_item(stored, f"item {item.id}"))
        elif isinstance(item, Compaction):
            items.extend(compaction.decode(item.encrypted_content))
        else:
            items.append(item)
    return items


def check_call_ids(history: Iterable[Item], new_input: Iterable[Item]) -> None:
    """D10: every tool output answers a call made earlier in the chain or in this input."""
    calls: set[str] = set()
    for item in history:
        calls.update(_call_ids_made(item))
    for item in new_input:
        answered = _call_id_answered(item)
        if answered is not None and answered not in calls:
            raise errors.unmatched_call_id(answered)
        calls.update(_call_ids_made(item))


def _call_ids_made(item: Item) -> tuple[str, ...]:
    if isinstance(item, FunctionCall):
        return (item.call_id,)
    if isinstance(item, OpaqueItem) and item.type == "custom_tool_call" and item.call_id:
        return (item.call_id,)
    return ()


def _call_id_answered(item: Item) -> str | None:
    if isinstance(item, FunctionCallOutput):
        return item.call_id
    if isinstance(item, OpaqueItem) and item.type == "custom_tool_call_output":
        return item.call_id
    return None


def _with_ids(items: list[Item]) -> Iterable[Item]:
    """Stored input items all carry an id (§10.7); the client's own ids are kept (§6.4)."""
    for item in items:
        has_id = getattr(item, "id", None) is not None
        yield item if has_id else with_id(item, ids.item_id(item_type(item)))
