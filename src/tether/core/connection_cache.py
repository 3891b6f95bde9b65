"""A WebSocket connection's memory of its responses (spec §8.2): never written anywhere.

Each lane keeps its latest response that ended `completed` or `incomplete` (warm-ups included),
and the connection keeps a few more recent ones. A `previous_response_id` resolves here first,
then in the store (for `store: true` responses), else `previous_response_not_found` (D1).
A `store: false` response therefore exists only on the connection that made it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from tether.core.chain import History, not_finished
from tether.protocol.items import Item

Lane = str | None  # None is the default lane
RECENT_RESPONSES = 8


class Warmth(Protocol):
    """The backend's side of it: keep the state of what a live lane will continue (its KV)."""

    def hold(self, response_id: str) -> None: ...

    def release(self, response_id: str) -> None: ...


@dataclass(frozen=True)
class Pending:
    """A response running on this connection: `ended` once its terminal event is out."""

    ended: Callable[[], bool]
    settled: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class CachedResponse:
    id: str
    items: tuple[Item, ...]  # its whole context: the chain's inputs and outputs, then its own


class ConnectionCache:
    def __init__(self, fallback: History, warmth: Warmth, recent: int = RECENT_RESPONSES) -> None:
        self.fallback = fallback
        self.warmth = warmth
        self.latest: dict[Lane, CachedResponse] = {}
        self.recent: OrderedDict[str, CachedResponse] = OrderedDict()
        self.recent_limit = recent
        self.in_flight: dict[str, Pending] = {}  # started on this connection, not yet settled

    def remember(self, lane: Lane, response: CachedResponse) -> None:
        """A response on `lane` ended well: it becomes the lane's latest (§8.2 rule 1)."""
        replaced = self.latest.get(lane)
        self.latest[lane] = response
        self.warmth.hold(response.id)
        if replaced is not None:
            self._release_unless_latest(replaced.id)
        self.recent[response.id] = response
        self.recent.move_to_end(response.id)
        while len(self.recent) > self.recent_limit:
            self.recent.popitem(last=False)

    def is_latest(self, lane: Lane, response_id: str | None) -> bool:
        latest = self.latest.get(lane)
        return latest is not None and latest.id == response_id

    def evict(self, response_id: str) -> None:
        """§8.2 rule 4: stale state is never reused; a stored copy can still be hydrated."""
        self.recent.pop(response_id, None)
        for lane in [lane for lane, cached in self.latest.items() if cached.id == response_id]:
            del self.latest[lane]
        self.warmth.release(response_id)

    def clear(self) -> None:
        for cached in self.latest.values():
            self.warmth.release(cached.id)
        self.latest.clear()
        self.recent.clear()

    def _release_unless_latest(self, response_id: str) -> None:
        if all(cached.id != response_id for cached in self.latest.values()):
            self.warmth.release(response_id)

    def _cached(self) -> Iterator[CachedResponse]:
        yield from self.latest.values()
        yield from reversed(self.recent.values())

    # --- History ----------------------------------------------------------------------------------

    def started(self, response_id: str, ended: Callable[[], bool]) -> None:
        self.in_flight[response_id] = Pending(ended)

    def settle(self, response_id: str) -> None:
        """The response is remembered (or, having failed, deliberately not): release waiters."""
        pending = self.in_flight.pop(response_id, None)
        if pending is not None:
            pending.settled.set()

    async def items_of(self, response_id: str) -> tuple[Item, ...]:
        pending = self.in_flight.get(response_id)
        if pending is not None:
            # Another lane may chain from it the moment its terminal event arrives (§8.2 rule 7).
            if not pending.ended():
                raise not_finished(response_id)
            await pending.settled.wait()
        for cached in self._cached():
            if cached.id == response_id:
                return cached.items
        return await self.fallback.items_of(response_id)

    async def find_item(self, item_id: str) -> Item | None:
        for cached in self._cached():
            for item in cached.items:
                if getattr(item, "id", None) == item_id:
                    return item
        return await self.fallback.find_item(item_id)
