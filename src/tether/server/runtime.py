"""What the transports share once the app has started: the Responses resource and the open
WebSocket connections. The app builds it empty and its lifespan fills it, because the backend
behind `Responses` loads only then."""

from __future__ import annotations

import time
from typing import Protocol

from tether.core.responses import Responses


class Drainable(Protocol):
    """An open WebSocket connection, as shutdown sees it (`server/lifecycle.py`)."""

    def shutdown(self) -> None: ...

    async def grace_over(self) -> None: ...


class Runtime:
    def __init__(self) -> None:
        self._responses: Responses | None = None
        self.connections: set[Drainable] = set()  # the open WebSocket connections, drained at shutdown
        self.started_at = 0.0

    @property
    def responses(self) -> Responses:
        if self._responses is None:
            raise RuntimeError("the app has not started: Responses exists once its lifespan runs")
        return self._responses

    def start(self, responses: Responses) -> None:
        self._responses = responses
        self.started_at = time.time()

    @property
    def busy(self) -> bool:
        """Responses still run, or connections are still open."""
        return self._responses is not None and bool(self._responses.running or self.connections)
