"""One WebSocket connection as a state machine, with no I/O (spec §3.6 to §3.8, §4.1.2, §8.1).

Frames and timer ticks go in; actions come out: `Send` an event, `StartTurn` for a create (or a
steered response's successor) that reached the head of its lane with an active slot free,
`SteerResponse` for a steer to hand to core, `Close` the socket. The shell
(`server/websocket.py`) performs the actions and owns sockets, tasks and clocks. Frames are
decoded by `protocol.client_events`; the session keeps lanes and states, not wire rules.

The connection's states are `TRANSITIONS` (docs/architecture.md draws it):

    OPEN ──cap passes, or shutdown──▶ DRAINING ──nothing running or queued──▶ CLOSING ──▶ CLOSED

DRAINING: accepted work finishes and new creates are refused. CLOSING: the close is sent — 1001
after the cap's limit error, 1012 (service restart, which the SDKs reconnect after) at shutdown.
CLOSED: the socket is gone (from any state); nothing starts any more.

Lanes: the default lane (key None) and named `stream_id` lanes, each FIFO. At most
`max_active_responses` run at once across lanes; a lane whose head waits for a slot joins
`waiting`, and the lane that has waited longest starts first. Phase 1 of §4.1.2 happens here
(JSON, type, cap, stream_id, lane cap, then the key's rate and the bounds on queued creates);
phase 2 (body schema, chain) happens in core when the turn starts. A steer is checked here for
the cap and a shutdown only; core checks the rest and finds its response.

A successor that core could not start in the lane turn of the response it steers (that turn had
moved on) waits at the head of its lane (§8.1: ahead of the creates already queued there).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from tether.config import WebSocketLimits
from tether.core.lifecycle import IllegalMove
from tether.core.steering import Due
from tether.protocol import client_events, errors, steering
from tether.protocol.client_events import Create, LaneKey, Steer
from tether.protocol.errors import ApiError
from tether.protocol.events import numbered
from tether.protocol.steering import SteerRejected


class State(enum.Enum):
    OPEN = "open"
    DRAINING = "draining"
    CLOSING = "closing"
    CLOSED = "closed"


TRANSITIONS: dict[State, dict[State, str]] = {
    State.OPEN: {
        State.DRAINING: "the cap passes, or the server shuts down",
        State.CLOSED: "the socket is gone",
    },
    State.DRAINING: {
        State.CLOSING: "nothing running or queued",
        State.CLOSED: "the socket is gone",
    },
    State.CLOSING: {State.CLOSED: "the socket is gone"},
    State.CLOSED: {},
}


@dataclass(frozen=True)
class Send:
    event: dict[str, Any]


@dataclass(frozen=True)
class StartTurn:
    lane: LaneKey
    work: Create | Due


@dataclass(frozen=True)
class SteerResponse:
    steer: Steer


@dataclass(frozen=True)
class Close:
    code: int
    reason: str


Action = Send | StartTurn | SteerResponse | Close


@dataclass
class Lane:
    queue: deque[Create | Due] = field(default_factory=deque)
    busy: bool = False  # a turn of this lane runs


class Session:
    def __init__(
        self, limits: WebSocketLimits, opened_at: float, admit: Callable[[], None] = lambda: None
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
        self.queued_bytes = 0  # the frames of the creates in the lanes' queues
        self.unowned_sent = 0  # numbers the events that belong to no response (`error`, steer failures)

    @property
    def idle(self) -> bool:
        return self.active == 0 and not any(lane.queue for lane in self.lanes.values())

    @property
    def named_lanes(self) -> int:
        return len(self.lanes) - 1

    # --- inputs -----------------------------------------------------------------------------------

    def receive_text(self, text: str, now: float) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        try:
            event = client_events.decode(text)
        except ApiError as error:
            return [self.error(error)]
        if isinstance(event, Steer):
            return [self._steer(event, now)]
        return self._create(event, now)

    def receive_binary(self) -> list[Action]:
        return [self.error(errors.binary_frame())]

    def turn_finished(self, lane_key: LaneKey) -> list[Action]:
        lane = self.lanes[lane_key]
        if not lane.busy:
            raise IllegalMove(f"turn_finished for lane {lane_key!r}, which is not running")
        lane.busy = False
        self.active -= 1
        if self.state is State.CLOSED:
            return []
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
        self._move(State.DRAINING)
        return self._close() if self.idle else []

    def shutdown(self) -> list[Action]:
        """The server is stopping: what was accepted finishes, then the socket closes with 1012."""
        self.shutting_down = True
        if self.state is State.OPEN:
            self._move(State.DRAINING)
        return self._close() if self.state is State.DRAINING and self.idle else []

    def grace_over(self) -> list[Action]:
        """Shutdown's grace has passed and what runs is being interrupted: creates still queued
        will never start, and each is refused (503) so that its client sends it again elsewhere."""
        refusals: list[Action] = [self.error(errors.server_shutting_down(), key)
                                  for key, lane in self.lanes.items() for _ in lane.queue]  # fmt: skip
        self._drop_queues()
        closing = self.state is State.DRAINING and self.idle
        return [*refusals, *self._close()] if closing else refusals

    def disconnected(self) -> None:
        """The socket is gone: queued creates are dropped (D9), and nothing starts any more."""
        self._move(State.CLOSED)
        self._drop_queues()

    # --- create -----------------------------------------------------------------------------------

    def _create(self, create: Create, now: float) -> list[Action]:
        lane_key = create.lane
        if self.shutting_down:
            return [self.error(errors.server_shutting_down(), lane_key)]
        if self._past_cap(now):
            refusal = self.error(errors.connection_limit_reached(self.limits.connection_cap_s), lane_key)
            closing = self.state is State.DRAINING and self.idle
            return [refusal, *self._close(said=True)] if closing else [refusal]
        if not create.has_valid_lane:
            return [self.error(errors.invalid_stream_id())]
        if lane_key not in self.lanes and self.named_lanes >= self.limits.max_named_lanes:
            return [self.error(errors.stream_limit_reached(self.limits.max_named_lanes), lane_key)]
        try:
            self.admit()
            self._check_queue(create.size)
        except ApiError as refusal:
            return [self.error(refusal, lane_key)]
        lane = self.lanes.setdefault(lane_key, Lane())
        lane.queue.append(replace(create, received_at=now))
        self.queued_bytes += create.size
        if lane.busy or lane_key in self.waiting:
            return []
        self.waiting.append(lane_key)
        return self._start_waiting()

    def error(self, error: ApiError, stream_id: str | None = None) -> Send:
        """An `error` event. Every event carries a `sequence_number` (clients validate it); one that
        belongs to no response takes the next of the connection's own counter, from 0."""
        return Send(error.ws_event(self._unowned_number(), stream_id))

    def steer_failed(self, body: dict[str, Any], rejected: SteerRejected) -> Send:
        """`response.steer.failed` for a steer that reached no response: numbered like an `error`."""
        return Send(numbered(steering.failed(body, rejected), self._unowned_number()))

    def _unowned_number(self) -> int:
        self.unowned_sent += 1
        return self.unowned_sent - 1

    def successor(self, due: Due) -> list[Action]:
        """A steered response's successor, to run at the head of its lane (see the module)."""
        if self.state is State.CLOSED:
            return []
        lane = self.lanes.setdefault(due.lane, Lane())
        lane.queue.appendleft(due)
        if lane.busy or due.lane in self.waiting:
            return []
        self.waiting.append(due.lane)
        return self._start_waiting()

    def _steer(self, steer: Steer, now: float) -> Action:
        """Like a create, a steer is refused once the server is stopping or the cap has passed
        (D5); core takes it from there."""
        if self.shutting_down:
            return self.error(errors.server_shutting_down())
        if self._past_cap(now):
            return self.error(errors.connection_limit_reached(self.limits.connection_cap_s))
        return SteerResponse(steer)

    def _check_queue(self, size: int) -> None:
        """§8.1 allows a bound on queued creates: Tether bounds their number and their bytes. A
        create alone in the queue is always accepted (the message limit bounds its size)."""
        queued = sum(len(lane.queue) for lane in self.lanes.values())
        if queued >= self.limits.max_queued_creates:
            raise errors.rate_limit_exceeded(
                f"{queued} response.create are already waiting on this connection, its maximum; "
                "send more as responses finish.",
                1.0,
            )
        if queued and self.queued_bytes + size > self.limits.max_queued_bytes:
            raise errors.rate_limit_exceeded(
                f"The response.create waiting on this connection hold {self.queued_bytes} bytes; "
                f"this one ({size} bytes) would pass the maximum of {self.limits.max_queued_bytes}. "
                "Send it as responses finish.",
                1.0,
            )

    def _start_waiting(self) -> list[Action]:
        actions: list[Action] = []
        while self.waiting and self.active < self.limits.max_active_responses:
            key = self.waiting.popleft()
            lane = self.lanes[key]
            lane.busy = True
            self.active += 1
            work = lane.queue.popleft()
            if isinstance(work, Create):
                self.queued_bytes -= work.size
            actions.append(StartTurn(key, work))
        return actions

    def _drop_queues(self) -> None:
        for lane in self.lanes.values():
            lane.queue.clear()
        self.waiting.clear()
        self.queued_bytes = 0

    def _past_cap(self, now: float) -> bool:
        if self.state is State.OPEN and now - self.opened_at >= self.limits.connection_cap_s:
            self._move(State.DRAINING)
        return self.state is not State.OPEN

    def _close(self, said: bool = False) -> list[Action]:
        """CLOSING. A close for the cap follows the `websocket_connection_limit_reached` error that
        says so (unless the last event `said` it already), so a client can tell a cap from a crash."""
        self._move(State.CLOSING)
        if self.shutting_down:
            return [Close(1012, "server shutting down")]
        notice = [] if said else [self.error(errors.connection_limit_reached(self.limits.connection_cap_s))]
        return [*notice, Close(1001, "connection limit reached")]

    def _move(self, to: State) -> None:
        if to not in TRANSITIONS[self.state]:
            raise IllegalMove(f"a connection cannot move from {self.state.value} to {to.value}")
        self.state = to
