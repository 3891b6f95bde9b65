"""Events of one generation, from the model thread to its consumer on the event loop.

The model thread never waits here: it asks for `room()` before a step that would produce an
event, and a consumer that is slow (and so a slow client) just leaves its answer out of the next
steps. That bounds the events in flight without holding up the other answers of the batch.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

from tether.backends.base import ModelEvent

# Events the model thread may run ahead of the consumer.
HANDOFF_EVENTS = 64

# What is handed over: an event, an error to raise, or None for "no more".
_Item = ModelEvent | BaseException | None


class Handoff:
    def __init__(self, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
        self._loop = loop
        self._wake = wake  # tells the model thread there is room again
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._in_flight = 0
        self._lock = threading.Lock()
        self.abandoned = threading.Event()  # the consumer stopped listening

    # --- on the model thread ----------------------------------------------------------------------

    def room(self) -> bool:
        with self._lock:
            return self._in_flight < HANDOFF_EVENTS

    def send(self, event: ModelEvent) -> None:
        with self._lock:
            self._in_flight += 1
        self._put(event)

    def fail(self, error: BaseException) -> None:
        self._put(error)
        self._put(None)

    def end(self) -> None:
        self._put(None)

    def _put(self, item: _Item) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is left to listen
            self.abandoned.set()

    # --- on the event loop ------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[ModelEvent]:
        """Every event until the end; raises what the model thread failed with."""
        try:
            while (item := await self._queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                with self._lock:
                    self._in_flight -= 1
                    full = self._in_flight == HANDOFF_EVENTS - 1
                if full:
                    self._wake()
                yield item
        finally:
            self.abandoned.set()
            self._wake()
