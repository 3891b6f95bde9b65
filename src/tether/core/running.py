"""The responses in flight: each between `response.created` and settled, and the registry of them.

A response in flight is visible to the API (`GET`, a stream's replay, cancel, its input items)
only when it is stored (`store: true`, §8.8) and only to its own tenant; to anyone else it is
answered like an unknown id. The registry is also what a stored chain asks before it reads a
parent from the store (`chain.InFlight`): a parent still running cannot be continued, and one
that has just ended is waited for until it is settled.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span

from tether.backends.base import Cancellation
from tether.core.cache_diagnostics import Shape
from tether.core.chain import Context
from tether.core.connection_cache import ConnectionCache
from tether.core.event_log import Event, EventLog, EventSink
from tether.core.lifecycle import Lifecycle
from tether.core.timeline import Timeline
from tether.protocol.client_events import LaneKey
from tether.protocol.events import ResponseEvents
from tether.protocol.request import CreateRequest


@dataclass(frozen=True)
class SocketTurn:
    """Where a WebSocket turn runs: its lane (`stream_id`, D4), the cache of its connection
    (which resolves its parent and records how it ended, §8.2), the connection's sender."""

    lane: LaneKey
    cache: ConnectionCache
    sender: EventSink
    connection: str  # names the connection, for the backend's metrics (`Generation.origin`)
    timeline: Timeline  # the connection's, which the turn joins once it has ended
    queued_s: float = 0.0  # how long its create waited on the connection (behind its lane, for a slot)


@dataclass
class Running:
    """A response between `response.created` and settled."""

    id: str
    request: CreateRequest
    tenant: str
    context: Context
    events: ResponseEvents
    log: EventLog  # every event, for stream readers and for the store
    sink: EventSink  # where the turn emits: the log, plus the socket's sender if it has one
    cancel: Cancellation
    socket: SocketTurn | None
    created_at: int
    shape: Shape  # what its prompt is made of, for cache diagnostics
    parent_shape: Shape | None  # the shape of the response it continues, when known here
    span: Span  # its trace span (`tracing.py`), ended once it has settled
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    began: float = field(default_factory=time.time)  # Unix time, exactly (`created_at` is whole seconds)
    # A steer's replies while it runs, said by its turn between its own events (`turn.Turn`).
    asides: deque[Callable[[], Event]] = field(default_factory=deque)
    # Its work, which ends after it settles for a warm-up (whose prefill follows its answer).
    task: asyncio.Task[None] | None = None
    # Writing its events to the store as they come, once another process follows it.
    publication: asyncio.Task[None] | None = None

    def snapshot(self) -> dict[str, Any]:
        return self.events.snapshot()


class InFlight:
    """Every response in flight, by id."""

    def __init__(self) -> None:
        self._by_id: dict[str, Running] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Running]:
        return iter(list(self._by_id.values()))

    def add(self, running: Running) -> None:
        self._by_id[running.id] = running

    def remove(self, running: Running) -> None:
        self._by_id.pop(running.id, None)

    def get(self, response_id: str) -> Running | None:
        """Any response in flight here, whoever's (for signals, which carry only an id)."""
        return self._by_id.get(response_id)

    def visible(self, response_id: str, tenant: str) -> Running | None:
        """The response in flight the API may show `tenant`, if any."""
        running = self._by_id.get(response_id)
        shown = running is not None and running.request.store and running.tenant == tenant
        return running if shown else None

    async def settled(self, response_id: str, tenant: str) -> bool:
        """`chain.InFlight`: False while the response runs; once it has ended, True when it is
        settled; True at once when it is not in flight (or not the tenant's to see)."""
        running = self.visible(response_id, tenant)
        if running is None:
            return True
        if not running.lifecycle.ended:
            return False
        await running.lifecycle.settled()
        return True
