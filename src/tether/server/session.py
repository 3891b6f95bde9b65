"""One WebSocket connection as a state machine, with no I/O (spec §3.6 to §3.8, §4.1.2, §8.1).

Frames and timer ticks go in; actions come out: `Send` an event, `StartTurn` for a create that
reached the head of its lane with an active slot free, `Close` the socket. The shell
(`server/websocket.py`) performs the actions and owns sockets, tasks and clocks.

    OPEN ──cap passes──▶ DRAINING ──nothing running or queued──▶ CLOSING (limit error, then 1001)
      └──────────── cap passes while idle ────────────────────────▲

Server shutdown drains the same way: accepted work finishes, later creates are refused, and the
close is 1012 (service restart), which the SDKs reconnect after.

Lanes: the default lane (key None) and named `stream_id` lanes, each FIFO. At most
`max_active` responses run at once across lanes; a lane whose head waits for a slot joins
`waiting`, and the lane that has waited longest starts first. Phase 1 of §4.1.2 happens here
(JSON, type, cap, stream_id, lane cap, then the key's rate and the bound on queued creates);
phase 2 (body schema, chain) happens when the turn starts.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tether.protocol import errors
from tether.protocol.errors import ApiError

LaneKey = str | None  # None is the default lane
STREAM_ID = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")


class State(enum.Enum):
    OPEN = "open"
    DRAINING = "draining"  # past the cap: accepted work finishes, new creates are refused
    CLOSING = "closing"  # 1001 sent


@dataclass(frozen=True)
class SessionLimits:
    max_active: int = 16
    max_named_lanes: int = 32
    cap_s: float = 3600.0
    max_queued: int = 64  # creates accepted but not started, all lanes together (§8.1 allows a bound)


@dataclass(frozen=True)
class Send:
    event: dict[str, Any]


@dataclass(frozen=True)
class StartTurn:
    lane: LaneKey
    body: dict[str, Any]


@dataclass(frozen=True)
class Close:
    code: int
    reason: str


Action = Send | StartTurn | Close


@dataclass
class Lane:
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    running: bool = False


class Session:
    def __init__(
        self, limits: SessionLimits, opened_at: float, admit: Callable[[], None] = lambda: None
    ) -> None:
        """`admit` is asked before each create is accepted, and raises the `ApiError` that refuses
        it (the key's request rate)."""
        self.limits = limits
        self.admit = admit
        self.opened_at = opened_at
        self.state = State.OPEN
        self.shutting_down = False
        self.lanes: dict[LaneKey, Lane] = {None: Lane()}
        self.active = 0
        self.waiting: deque[LaneKey] = deque()  # lanes whose head waits for an active slot
        self.errors_sent = 0  # numbers the `error` events, which belong to no response

    @property
    def idle(self) -> bool:
        return self.active == 0 and not any(lane.queue for lane in self.lanes.values())

    @property
    def named_lanes(self) -> int:
        return len(self.lanes) - 1

    # --- inputs -----------------------------------------------------------------------------------

    def receive_text(self, text: str, now: float) -> list[Action]:
        try:
            event = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return [self.error(errors.invalid_json(str(exc)))]
        if not isinstance(event, dict):
            return [self.error(errors.invalid_json("expected a JSON object"))]
        kind = event.get("type")
        if not isinstance(kind, str):
            return [self.error(errors.missing_event_type())]
        if kind == "response.create":
            return self._create(event, now)
        if kind == "response.steer":
            if self._past_cap(now):
                return [self.error(errors.connection_limit_reached(self.limits.cap_s))]
            return [self.error(errors.unsupported_event(kind))]
        return [self.error(errors.unknown_event_type(kind))]

    def receive_binary(self) -> list[Action]:
        return [self.error(errors.binary_frame())]

    def turn_finished(self, lane_key: LaneKey) -> list[Action]:
        lane = self.lanes[lane_key]
        if not lane.running:
            raise AssertionError(f"turn_finished for lane {lane_key!r}, which is not running")
        lane.running = False
        self.active -= 1
        if lane.queue:
            self.waiting.append(lane_key)
        actions = self._start_waiting()
        if self.state is State.DRAINING and self.idle:
            actions += self._close()
        return actions

    def cap_reached(self) -> list[Action]:
        """The shell's timer fired at `opened_at + cap_s`."""
        if self.state is not State.OPEN:
            return []
        self.state = State.DRAINING
        return self._close() if self.idle else []

    def shutdown(self) -> list[Action]:
        """The server is stopping: what was accepted finishes, then the socket closes with 1012."""
        self.shutting_down = True
        if self.state is State.CLOSING:
            return []
        self.state = State.DRAINING
        return self._close() if self.idle else []

    def grace_over(self) -> list[Action]:
        """Shutdown's grace has passed and what runs is being interrupted: creates still queued
        will never start, and each is refused (503) so that its client sends it again elsewhere."""
        refusals: list[Action] = [self.error(errors.server_shutting_down(), key)
                                  for key, lane in self.lanes.items() for _ in lane.queue]  # fmt: skip
        for lane in self.lanes.values():
            lane.queue.clear()
        self.waiting.clear()
        closing = self.state is State.DRAINING and self.idle
        return [*refusals, *self._close()] if closing else refusals

    # --- create -----------------------------------------------------------------------------------

    def _create(self, body: dict[str, Any], now: float) -> list[Action]:
        stream_id = body.get("stream_id")
        valid_stream_id = stream_id if isinstance(stream_id, str) and STREAM_ID.match(stream_id) else None
        if self.shutting_down:
            return [self.error(errors.server_shutting_down(), valid_stream_id)]
        if self._past_cap(now):
            refusal = self.error(errors.connection_limit_reached(self.limits.cap_s), valid_stream_id)
            closing = self.state is State.DRAINING and self.idle
            return [refusal, *self._close(said=True)] if closing else [refusal]
        if stream_id is not None and valid_stream_id is None:
            return [self.error(errors.invalid_stream_id())]
        if valid_stream_id not in self.lanes and self.named_lanes >= self.limits.max_named_lanes:
            return [self.error(errors.stream_limit_reached(self.limits.max_named_lanes), stream_id)]
        try:
            self.admit()
            self._check_queue()
        except ApiError as refusal:
            return [self.error(refusal, valid_stream_id)]
        lane = self.lanes.setdefault(valid_stream_id, Lane())
        lane.queue.append(body)
        if lane.running or valid_stream_id in self.waiting:
            return []
        self.waiting.append(valid_stream_id)
        return self._start_waiting()

    def error(self, error: ApiError, stream_id: str | None = None) -> Send:
        """An `error` event. Every event carries a `sequence_number` (clients validate it); one that
        belongs to no response takes the next of the connection's own counter, from 0."""
        event = error.ws_event(self.errors_sent, stream_id)
        self.errors_sent += 1
        return Send(event)

    def _check_queue(self) -> None:
        queued = sum(len(lane.queue) for lane in self.lanes.values())
        if queued >= self.limits.max_queued:
            raise errors.rate_limit_exceeded(
                f"{queued} response.create are already waiting on this connection, its maximum; "
                "send more as responses finish.",
                1.0,
            )

    def _start_waiting(self) -> list[Action]:
        actions: list[Action] = []
        while self.waiting and self.active < self.limits.max_active:
            key = self.waiting.popleft()
            lane = self.lanes[key]
            lane.running = True
            self.active += 1
            actions.append(StartTurn(key, lane.queue.popleft()))
        return actions

    def _past_cap(self, now: float) -> bool:
        if self.state is State.OPEN and now - self.opened_at >= self.limits.cap_s:
            self.state = State.DRAINING
        return self.state is not State.OPEN

    def _close(self, said: bool = False) -> list[Action]:
        """CLOSING. A close for the cap follows the `websocket_connection_limit_reached` error that
        says so (unless the last event `said` it already), so a client can tell a cap from a crash."""
        self.state = State.CLOSING
        if self.shutting_down:
            return [Close(1012, "server shutting down")]
        notice = [] if said else [self.error(errors.connection_limit_reached(self.limits.cap_s))]
        return [*notice, Close(1001, "connection limit reached")]
