"""The store interface.

    StoreError               the store failed (our side: shown as a generic server_error)

A store persists opaque JSON-able dicts: it never interprets an item or a Response beyond the ids,
the chain link, the status and the tenant it is handed explicitly. Every read is within one tenant.

A `store: true` response is `save`d whole once: at its end, or, when its id reaches someone
before that, as it begins (status `queued` or `in_progress`, its input, its `response.created`)
and then `finish`ed before its terminal event goes out. In between it belongs to the process that
saved it (its `owner`); several processes may share one store, so the store also carries what
they say to each other (`Signal`) and which of them are alive (`renew`, `orphans`): a running
response whose owner stopped renewing is an orphan that any process may end.
"""

from __future__ import annotations

import enum
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Json = dict[str, Any]
DEFAULT_TENANT = "default"  # of keys configured without a tenant, and of a server without keys


# The statuses of a response that has not ended yet (the others are terminal).
RUNNING = ("queued", "in_progress")


class StoreError(Exception):
    pass


class Signal(enum.Enum):
    """What one process sharing the store tells the others about a response."""

    PUBLISH = "publish"  # someone elsewhere follows it: its owner should write its events as they come
    CANCEL = "cancel"  # its owner should cancel it
    CHANGED = "changed"  # it has new events, or has ended


SignalHandler = Callable[[Signal, str], None]


def new_owner() -> str:
    """A name for this process in the rows it owns, unique across restarts (and readable in logs)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


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
class Progress:
    """A response's status and its events after some sequence number, as stored now."""

    status: str
    events: list[Json]


@dataclass(frozen=True)
class Orphan:
    """A running response whose owner no longer renews its lease."""

    id: str
    tenant: str
    owner: str | None
    response: Json
    last_sequence: int  # of its last stored event


@dataclass(frozen=True)
class Chain:
    """A stored response's history: the ids of the chain, root first, ending with its own, and
    the inputs and outputs of each, in order."""

    ids: tuple[str, ...]
    items: list[Json]
    size: int  # bytes of the items as stored (JSON)


@dataclass(frozen=True)
class Relative:
    """A response as a node of its chain's tree (`Store.family`)."""

    id: str
    previous_response_id: str | None
    status: str
    created_at: int


@dataclass(frozen=True)
class ItemPage:
    items: list[Json]
    has_more: bool


class Store(Protocol):
    owner: str  # this process, in the rows it saves

    async def save(self, record: StoredResponse) -> None:
        """Write a response whole, in one transaction, owned by this process: as it begins, or at
        its end when it was not saved as it began."""
        ...

    async def finish(self, record: StoredResponse) -> bool:
        """Write the end of a response saved as it began, in one transaction, and signal CHANGED.
        False (and nothing written) when it is no longer running as this process's: another
        process ended it as an orphan (or it was deleted since)."""
        ...

    async def publish(self, response_id: str, response: Json, events: list[Json]) -> None:
        """Write events of a running response (and the Response as it stands), signal CHANGED."""
        ...

    async def get(self, response_id: str, tenant: str) -> Json | None:
        """The Response object, or None for an id unknown to `tenant` (or deleted)."""
        ...

    async def chain(self, response_id: str, tenant: str) -> Chain | None:
        """The chain from its root to `response_id`, with every response's items.

        None when the response or one of its ancestors is unknown or deleted.
        """
        ...

    async def family(self, response_id: str, tenant: str, limit: int) -> list[Relative]:
        """The tree `response_id` belongs to, within `tenant`: its ancestors up to the topmost
        stored, then that root's descendants breadth first — every fork — `limit` of them at most
        (the path to `response_id` always included). Empty for an id unknown to `tenant`."""
        ...

    async def intact(self, ids: tuple[str, ...], tenant: str) -> bool:
        """Whether every response of `ids` is still stored, and `tenant`'s."""
        ...

    async def input_items(
        self, response_id: str, tenant: str, *, after: str | None, limit: int, order: Literal["asc", "desc"]
    ) -> ItemPage | None: ...

    async def progress(self, response_id: str, tenant: str, starting_after: int) -> Progress | None:
        """The status, then the events after `starting_after` (read in that order, so a terminal
        status comes with every event)."""
        ...

    async def find_item(self, item_id: str, tenant: str) -> Json | None:
        """The most recent stored item with this id among `tenant`'s (for `item_reference`)."""
        ...

    async def delete(self, response_id: str, tenant: str) -> bool: ...

    async def renew(self, lease_s: float) -> None:
        """Say that this process is alive for `lease_s` more seconds."""
        ...

    async def orphans(self) -> list[Orphan]:
        """Running responses whose owner is not alive (SQLite: any other process, since one
        process serves a file; the rows it finds were left by a process that died)."""
        ...

    async def end_orphan(self, orphan: Orphan, response: Json, event: Json) -> bool:
        """End an orphan with this terminal Response and event, and signal CHANGED; False when
        it was no longer an orphan (ended meanwhile, by its owner or another process)."""
        ...

    async def signal(self, kind: Signal, response_id: str) -> None:
        """Tell every process sharing the store (this one included)."""
        ...

    def on_signal(self, handler: SignalHandler) -> None:
        """Where this process hears signals (one handler)."""
        ...

    async def secret(self, name: str, candidate: bytes) -> bytes:
        """The secret `name` of every process sharing the store, kept with its data: `candidate`
        when none was kept before (it is kept now), else the one kept first."""
        ...

    async def check(self) -> None:
        """Raise `StoreError` when the store cannot be read now (for `/readyz`)."""
        ...

    async def aclose(self) -> None: ...
