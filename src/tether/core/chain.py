"""What a request's context is: the chain behind `previous_response_id` plus the new input.

Resolution order (spec §4.1.2 phase 2): the parent (§8.3), then `item_reference` and `compaction`
items in the input, then every tool output's `call_id` against the chain and the earlier input
(D10). Each failure is an `ApiError` raised before any response exists.

Where a parent's items come from is a `History`: the store over HTTP (`StoredHistory`); on a
WebSocket, the connection's cache first and the store behind it (`core.connection_cache`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from tether.core.lifecycle import is_chainable
from tether.core.sealing import ReasoningSeal, readable
from tether.core.stored_contexts import StoredContext, StoredContexts
from tether.protocol import compaction, errors, ids, resources
from tether.protocol.items import (
    Compaction,
    FunctionCall,
    FunctionCallOutput,
    Item,
    ItemReference,
    item_type,
    parse_item,
    with_id,
)
from tether.store.base import RUNNING, Store


@dataclass(frozen=True)
class Context:
    """`history` is the chain's items; `input` is this request's own, resolved and with ids."""

    history: tuple[Item, ...]
    input: tuple[Item, ...]

    @property
    def items(self) -> tuple[Item, ...]:
        return self.history + self.input


class History(Protocol):
    async def items_of(self, response_id: str) -> tuple[Item, ...]:
        """The whole context of a finished response: its chain's inputs and outputs, in order.

        Raises `previous_response_not_found`, or a 400 naming an unfinished response.
        """
        ...

    async def find_item(self, item_id: str) -> Item | None: ...


class InFlight(Protocol):
    async def settled(self, response_id: str, tenant: str) -> bool:
        """False while `response_id` is still running. Once it has ended, wait until what it
        leaves behind is in place (stored, cached), then True; True at once for unknown ids.

        A client may chain from a response the moment its terminal event arrives, which can be
        a moment before the server has committed it: that client must not be told "not found"."""
        ...


class StoredHistory:
    """One tenant's chains of `store: true` responses, the only ones HTTP can continue (§8.3).

    A history this process holds parsed (`contexts`) costs one question to the store, whether its
    chain is still whole; any other is read from the store, and then held. Items read from the
    store are stored as they came: a reasoning item replayed with only its blob is opened
    (`seal`) as it was when it came."""

    def __init__(
        self, store: Store, in_flight: InFlight, tenant: str, contexts: StoredContexts, seal: ReasoningSeal
    ) -> None:
        self.store = store
        self.in_flight = in_flight
        self.tenant = tenant
        self.contexts = contexts
        self.seal = seal

    async def items_of(self, response_id: str) -> tuple[Item, ...]:
        if not await self.in_flight.settled(response_id, self.tenant):
            raise not_finished(response_id)
        held = self.contexts.get(response_id, self.tenant)
        if held is not None:
            if await self.store.intact(held.lineage, self.tenant):
                return held.items
            self.contexts.forget(response_id)  # a link was deleted, maybe on another replica
            raise errors.previous_response_not_found(response_id)
        parent = await self.store.get(response_id, self.tenant)
        if parent is not None and resources.status_of(parent) in RUNNING:  # in another process
            raise not_finished(response_id)
        if parent is None or not is_chainable(resources.status_of(parent)):
            raise errors.previous_response_not_found(response_id)
        chain = await self.store.chain(response_id, self.tenant)
        if chain is None:
            raise errors.previous_response_not_found(response_id)
        parsed = tuple(parse_item(raw, f"stored item {i}") for i, raw in enumerate(chain.items))
        items = readable(parsed, self.seal, self.tenant)
        self.contexts.put(response_id, StoredContext(self.tenant, items, chain.ids, chain.size))
        return items

    async def find_item(self, item_id: str) -> Item | None:
        stored = await self.store.find_item(item_id, self.tenant)
        if stored is None:
            return None
        return readable((parse_item(stored, f"item {item_id}"),), self.seal, self.tenant)[0]


def not_finished(response_id: str) -> errors.ApiError:
    return errors.invalid_request(
        f"Previous response with id '{response_id}' has not finished yet.", "previous_response_id"
    )


async def resolve(previous_response_id: str | None, new_input: tuple[Item, ...], history: History) -> Context:
    chain = await history.items_of(previous_response_id) if previous_response_id else ()
    resolved = await _expand(new_input, history)
    check_call_ids(chain, resolved)
    return Context(history=chain, input=tuple(_with_ids(resolved)))


async def _expand(new_input: tuple[Item, ...], history: History) -> list[Item]:
    items: list[Item] = []
    for item in new_input:
        if isinstance(item, ItemReference):
            found = await history.find_item(item.id)
            if found is None:
                raise errors.invalid_request(f"Item with id '{item.id}' not found.", "input")
            items.append(found)
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
    return ()


def _call_id_answered(item: Item) -> str | None:
    if isinstance(item, FunctionCallOutput):
        return item.call_id
    return None


def _with_ids(items: list[Item]) -> Iterable[Item]:
    """Stored input items all carry an id (§10.7); the client's own ids are kept (§6.4)."""
    for item in items:
        has_id = getattr(item, "id", None) is not None
        yield item if has_id else with_id(item, ids.item_id(item_type(item)))
