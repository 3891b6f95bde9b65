"""A WebSocket connection's memory of its responses (spec §8.2): never written anywhere.

Every rule of §8.2 is here, applied as each response of the connection settles (`record`) or
a create is refused before a response exists (`refused`):

1. a lane's latest is its last response that ended chainable (`completed` or `incomplete`,
   warm-ups included), replaced when a newer one *finishes*; the connection keeps a few more
   recent ones;
3. a `previous_response_id` resolves here first, then in the store (for `store: true`), else
   `previous_response_not_found` (D1) — so a `store: false` response exists only on the
   connection that made it (rule 9);
4. a same-lane continuation that fails (`response.failed`, or an `error` event before it
   started) evicts its parent;
5. a fork from another lane's latest that fails leaves that lane alone;
6. nothing else evicts: not an `incomplete`, not a failure that named no parent;
7. a parent still running on this connection cannot be continued; one that has just ended is
   waited for until it is recorded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from tether.core.chain import History, not_finished
from tether.core.lifecycle import Lifecycle, Outcome, State
from tether.protocol.client_events import LaneKey
from tether.protocol.items import Item


class Warmth(Protocol):
    """The backend's side of it: keep the state of what a live lane will continue (its KV)."""

    def hold(self, response_id: str) -> None: ...

    def release(self, response_id: str) -> None: ...


@dataclass(frozen=True)
class CachedResponse:
    id: str
    items: tuple[Item, ...]  # its whole context: the chain's inputs and outputs, then its own


class ConnectionCache:
    def __init__(self, fallback: History, warmth: Warmth, recent: int) -> None:
        """`recent`: how many responses the connection keeps beyond each lane's latest."""
        self.fallback = fallback
        self.warmth = warmth
        self.latest: dict[LaneKey, CachedResponse] = {}
        self.recent: OrderedDict[str, CachedResponse] = OrderedDict()
        self.recent_limit = recent
        self.in_flight: dict[str, Lifecycle] = {}  # started on this connection, not yet recorded

    # --- the rules --------------------------------------------------------------------------------

    def started(self, response_id: str, lifecycle: Lifecycle) -> None:
        self.in_flight[response_id] = lifecycle

    def record(
        self, lane: LaneKey, parent: str | None, response_id: str, context: tuple[Item, ...], outcome: Outcome
    ) -> None:
        """The response `response_id`, started on `lane` from `parent`, ended with `outcome`."""
        self.in_flight.pop(response_id, None)
        if outcome.chainable:
            self._remember(lane, CachedResponse(response_id, context + outcome.output))
        elif outcome.status is State.FAILED:
            self._continuation_failed(lane, parent)

    def refused(self, lane: LaneKey, parent: str | None) -> None:
        """A create on `lane` from `parent` got an `error` event before a response existed."""
        self._continuation_failed(lane, parent)

    def _continuation_failed(self, lane: LaneKey, parent: str | None) -> None:
        # Rules 4 and 5 (and D10): only a same-lane continuation evicts its parent.
        if parent is not None and self.is_latest(lane, parent):
            self._evict(parent)

    def is_latest(self, lane: LaneKey, response_id: str | None) -> bool:
        latest = self.latest.get(lane)
        return latest is not None and latest.id == response_id

    def clear(self) -> None:
        """The connection is gone, and its cache with it (rule 8)."""
        for cached in self.latest.values():
            self.warmth.release(cached.id)
        self.latest.clear()
        self.recent.clear()

    def _remember(self, lane: LaneKey, response: CachedResponse) -> None:
        replaced = self.latest.get(lane)
        self.latest[lane] = response
        self.warmth.hold(response.id)
        if replaced is not None:
            self._release_unless_latest(replaced.id)
        self.recent[response.id] = response
        self.recent.move_to_end(response.id)
        while len(self.recent) > self.recent_limit:
            self.recent.popitem(last=False)

    def _evict(self, response_id: str) -> None:
        """Stale state is never reused; a stored copy can still be hydrated (rule 4)."""
        self.recent.pop(response_id, None)
        for lane in [lane for lane, cached in self.latest.items() if cached.id == response_id]:
            del self.latest[lane]
        self.warmth.release(response_id)

    def _release_unless_latest(self, response_id: str) -> None:
        if all(cached.id != response_id for cached in self.latest.values()):
            self.warmth.release(response_id)

    def _cached(self) -> Iterator[CachedResponse]:
        yield from self.latest.values()
        yield from reversed(self.recent.values())

    # --- History ----------------------------------------------------------------------------------

    async def items_of(self, response_id: str) -> tuple[Item, ...]:
        running = self.in_flight.get(response_id)
        if running is not None:
            # Another lane may chain from it the moment its terminal event arrives (rule 7).
            if not running.ended:
                raise not_finished(response_id)
            await running.settled()
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
