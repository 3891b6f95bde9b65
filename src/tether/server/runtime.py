"""What the transports share once the app has started: the Responses resource, the open
WebSocket connections and the latest closed. The app builds it empty and its lifespan fills it,
because the backend behind `Responses` loads only then."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from tether.core.responses import Responses
from tether.core.timeline import TurnRecord

CLOSED_KEPT = 20  # closed WebSocket connections the inspector still shows, the latest


@dataclass(frozen=True)
class LaneView:
    stream_id: str | None  # None: the default lane
    running: bool
    queued: int
    waited_s: float | None  # how long the oldest create queued on it has waited; None: none waits


@dataclass(frozen=True)
class RunningView:
    """A response the connection started whose work is not over (a warm-up's prefill too)."""

    response_id: str
    stream_id: str | None
    age_s: float


@dataclass(frozen=True)
class ConnectionView:
    """A WebSocket connection as the inspector shows it, at one moment."""

    id: str
    tenant: str
    key: str  # the label of its key
    peer: str
    user_agent: str
    state: str
    opened_at: float  # Unix time
    age_s: float
    cap_left_s: float  # until it drains for its cap
    lanes: tuple[LaneView, ...]
    responses: tuple[RunningView, ...]  # the oldest first
    running: int  # of its active slots, taken
    queued_bytes: int
    received_bytes: int
    received_frames: int
    sent_bytes: int
    sent_events: int
    send_queue: int  # events waiting for the socket
    send_queue_max: int
    timeline: tuple[TurnRecord, ...]  # oldest first
    closed_at: float | None = None

    @property
    def queued(self) -> int:
        return sum(lane.queued for lane in self.lanes)


class Connected(Protocol):
    """An open WebSocket connection, as shutdown (`server/lifecycle.py`) and the inspector see it."""

    id: str
    tenant: str
    opened_at: float  # Unix time

    def shutdown(self) -> None: ...

    async def grace_over(self) -> None: ...

    def view(self) -> ConnectionView: ...


class Runtime:
    def __init__(self) -> None:
        self._responses: Responses | None = None
        self.connections: set[Connected] = set()  # the open WebSocket connections, drained at shutdown
        self.closed: deque[ConnectionView] = deque(maxlen=CLOSED_KEPT)  # as each was at its close
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
