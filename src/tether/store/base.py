"""The store interface.

    StoreError               the store failed (our side: shown as a generic server_error)

A store persists opaque JSON-able dicts: it never interprets an item or a Response beyond the ids,
the chain link and the tenant it is handed explicitly. Every read is within one tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

Json = dict[str, Any]
DEFAULT_TENANT = "default"  # of keys configured without a tenant, and of a server without keys


class StoreError(Exception):
    pass


@dataclass(frozen=True)
class StoredResponse:
    """Everything a terminal `store: true` response leaves behind, committed in one transaction."""

    id: str
    tenant: str
    previous_response_id: str | None
    status: str
    created_at: int
    response: Json
    input_items: tuple[Json, ...]  # this request's own input, each with an `id`
    output_items: tuple[Json, ...]
    events: tuple[Json, ...]


@dataclass(frozen=True)
class Chain:
    """A stored response's history: the ids of the chain, root first, ending with its own, and
    the inputs and outputs of each, in order."""

    ids: tuple[str, ...]
    items: list[Json]
    size: int  # bytes of the items as stored (JSON)


@dataclass(frozen=True)
class ItemPage:
    items: list[Json]
    has_more: bool


class Store(Protocol):
    async def save(self, record: StoredResponse) -> None: ...

    async def get(self, response_id: str, tenant: str) -> Json | None:
        """The Response object, or None for an id unknown to `tenant` (or deleted)."""
        ...

    async def chain(self, response_id: str, tenant: str) -> Chain | None:
        """The chain from its root to `response_id`, with every response's items.

        None when the response or one of its ancestors is unknown or deleted.
        """
        ...

    async def intact(self, ids: tuple[str, ...], tenant: str) -> bool:
        """Whether every response of `ids` is still stored, and `tenant`'s."""
        ...

    async def input_items(
        self, response_id: str, tenant: str, *, after: str | None, limit: int, order: Literal["asc", "desc"]
    ) -> ItemPage | None: ...

    async def events(self, response_id: str, tenant: str, starting_after: int) -> list[Json] | None: ...

    async def find_item(self, item_id: str, tenant: str) -> Json | None:
        """The most recent stored item with this id among `tenant`'s (for `item_reference`)."""
        ...

    async def delete(self, response_id: str, tenant: str) -> bool: ...

    async def check(self) -> None:
        """Raise `StoreError` when the store cannot be read now (for `/readyz`)."""
        ...

    async def aclose(self) -> None: ...
