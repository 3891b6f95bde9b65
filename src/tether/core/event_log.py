"""The events of one running response, in order, for every reader that wants them.

The turn appends; an SSE writer, a streaming `GET` or a WebSocket sender follows from any
sequence number. A response's events are bounded by its own length, and the log is dropped once
the response is stored, so no log outlives its response by more than the store write.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

Event = dict[str, Any]


class EventSink(Protocol):
    async def emit(self, event: Event) -> None: ...


class EventLog:
    def __init__(self) -> None:
        self._events: list[Event] = []
        self._closed = False
        self._changed = asyncio.Condition()

    @property
    def events(self) -> list[Event]:
        return list(self._events)

    async def emit(self, event: Event) -> None:
        async with self._changed:
            self._events.append(event)
            self._changed.notify_all()

    async def close(self) -> None:
        """No more events will come (the response reached a terminal state)."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()

    async def follow(self, starting_after: int = -1) -> AsyncIterator[Event]:
        """Events with `sequence_number > starting_after`, live, until the log closes."""
        index = starting_after + 1
        while True:
            batch, done = await self.beyond(index)
            for event in batch:
                yield event
            index += len(batch)
            if done and index >= len(self._events):
                return

    async def beyond(self, index: int) -> tuple[list[Event], bool]:
        """The events from position `index` on, once there is one (or the log closed), and
        whether it has closed."""
        async with self._changed:
            await self._changed.wait_for(lambda: index < len(self._events) or self._closed)
            return self._events[index:], self._closed


class FanOut:
    """Emits each event to several sinks in turn; a slow one slows the emitter (backpressure)."""

    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = sinks

    async def emit(self, event: Event) -> None:
        for sink in self.sinks:
            await sink.emit(event)
