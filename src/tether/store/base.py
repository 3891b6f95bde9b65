"""The store interface.

    StoreError               the store failed (our side: shown as a generic server_error)

A store persists opaque JSON-able dicts: it never interprets an item or a Response beyond the ids
and the chain link it is handed explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

Json = dict[str, Any]


class StoreError(Exception):
    pass


@dataclass(frozen=True)
class StoredResponse:
    """Everything a terminal `store: true` response leaves behind, committed in one transaction."""

    id: str
    previous_response_id: str | None
    status: str
    created_at: int
    response: Json
    input_items: tuple[Json, ...]  # this request's own input, each with an `id`
    output_items: tuple[Json, ...]
    events: tuple[Json, ...]


@dataclass(frozen=True)
class ItemPage:
    items: list[Json]
    has_more: bool


class Store(Protocol):
    async def save(self, record: StoredResponse) -> None: ...

    async def get(self, response_id: str) -> Json | None:
        """The Response object, or None for an unknown or deleted id."""
        ...

    async def chain_items(self, response_id: str) -> list[Json] | None:
        """Inputs and outputs of every response from the chain's root to `response_id`, in order.

        None when the response or one of its ancestors is unknown or deleted.
        """
        ...

    async def input_items(
        self, response_id: str, *, after: str | None, limit: int, order: Literal["asc", "desc"]
    ) -> ItemPage | None: ...

    async def events(self, response_id: str, starting_after: int) -> list[Json] | None: ...

    async def find_item(self, item_id: str) -> Json | None:
        """The most recent stored item with this id (for `item_reference`)."""
        ...

    async def delete(self, response_id: str) -> bool: ...

    async def aclose(self) -> None: ...
