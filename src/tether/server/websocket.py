"""WebSocket mode (spec §3, §8): the shell between the socket, `session.Session` (the lanes and
the connection's states, no I/O) and `core.connection.Connection` (the responses).

It alone touches the socket, the clock and tasks. Frames go into the session; its actions are
performed here: `Send` through the connection's one bounded sender, `StartTurn` as a task per
running lane that hands the create (or a steered response's successor) to core once and waits
until its response has settled, `SteerResponse` handed to core at once (its reply may wait for
the response it steers to settle), `Close` after the sender has flushed.

On disconnect (D9), for any reason: running responses are interrupted (a `store: true` one is
kept as `incomplete` / `interrupted`), queued creates are dropped, and the cache dies with the
socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from tether.config import WebSocketLimits
from tether.core.connection import Connection
from tether.core.event_log import Event
from tether.core.responses import Responses
from tether.core.steering import Due, SteerLimits
from tether.logs import CONNECTION_ID
from tether.protocol import errors, handshake
from tether.protocol.client_events import Create, LaneKey, Steer, utf8_size
from tether.protocol.errors import ApiError
from tether.protocol.steering import SteerRejected
from tether.server.admission import Admission
from tether.server.auth import caller_of
from tether.server.runtime import ConnectionView, LaneView, RunningView, Runtime
from tether.server.session import Action, Close, Send, Session, StartTurn, SteerResponse
from tether.tracing import connection_span

log = logging.getLogger(__name__)

_CLOSE = object()  # sentinel that ends the sender


class Sender:
    """The connection's one outbound queue, bounded: a slow reader makes generation wait (§8).

    Events go out in the order `emit` was called, even by several tasks while the queue is full
    (a bare `Queue.put` lets a newcomer overtake a woken waiter): a steer's reply and the
    response it is about are numbered in one sequence, from two tasks."""

    def __init__(self, websocket: WebSocket, max_events: int) -> None:
        self.websocket = websocket
        self.queue: asyncio.Queue[Event | object] = asyncio.Queue(max_events)
        self.in_turn = asyncio.Lock()  # first come, first served
        self.closed = False
        self.close_with = (1000, "")
        self.sent_events = 0
        self.sent_bytes = 0

    async def emit(self, event: Event) -> None:
        if not self.closed:
            async with self.in_turn:
                await self.queue.put(event)

    async def close(self, code: int, reason: str) -> None:
        """Send what is queued, then the close frame."""
        self.close_with = (code, reason)
        await self.queue.put(_CLOSE)

    def abandon(self) -> None:
        """The peer is gone: drop queued events and never block an emitter again."""
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()

    async def run(self) -> None:
        while (event := await self.queue.get()) is not _CLOSE:
            frame = orjson.dumps(event)
            self.sent_events += 1
            self.sent_bytes += len(frame)
            await self.websocket.send_text(frame.decode())
        self.closed = True
        code, reason = self.close_with
        await self.websocket.close(code, reason)


class Shell:
    """Owns the socket, the clock and the tasks of one connection; decides nothing itself."""

    def __init__(
        self, websocket: WebSocket, responses: Responses, limits: WebSocketLimits, admission: Admission
    ) -> None:
        self.websocket = websocket
        self.loop = asyncio.get_running_loop()
        caller = caller_of(websocket.scope)
        self.session = Session(
            limits, opened_at=self.loop.time(), admit=lambda: admission.request(caller.key)
        )
        self.sender = Sender(websocket, limits.send_queue_events)
        steers = SteerLimits(limits.max_pending_steers, limits.max_queued_bytes)
        self.connection = Connection(responses, caller.tenant, self.sender, limits.cached_responses, steers)
        self.lanes: dict[LaneKey, asyncio.Task[None]] = {}  # the turn running on each lane
        # What the inspector shows of it (`view`).
        self.id, self.tenant, self.key = self.connection.id, caller.tenant, caller.key
        self.opened_at = time.time()
        headers, client = websocket.headers, websocket.client
        self.user_agent = headers.get("user-agent", "")
        self.peer = "" if client is None else f"{client.host}:{client.port}"
        self.received_frames = 0
        self.received_bytes = 0

    async def serve(self) -> None:
        sender = asyncio.create_task(self.sender.run(), name="ws-sender")
        cap = self.loop.call_later(self.session.limits.connection_cap_s, self._cap_reached)
        try:
            while not sender.done():
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                self.received_frames += 1
                if message.get("text") is not None:
                    self.received_bytes += utf8_size(message["text"])
                    actions = self.session.receive_text(message["text"], self.loop.time())
                else:
                    self.received_bytes += len(message.get("bytes") or b"")
                    actions = self.session.receive_binary()
                await self._perform(actions)
        except WebSocketDisconnect:
            pass
        finally:
            cap.cancel()
            await self._disconnected(sender)

    async def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                await self.sender.emit(action.event)
            elif isinstance(action, StartTurn):
                if not self.connection.gone:
                    self._start(action.lane, action.work)
            elif isinstance(action, SteerResponse):
                await self._steer(action.steer)
            elif isinstance(action, Close):
                await self.sender.close(action.code, action.reason)

    def _cap_reached(self) -> None:
        self._perform_soon(self.session.cap_reached())

    def shutdown(self) -> None:
        """The server is stopping: let accepted work finish, then close with 1012."""
        self._perform_soon(self.session.shutdown())

    async def grace_over(self) -> None:
        """Shutdown's grace has passed: refuse what is still queued (what runs is interrupted)."""
        await self._perform(self.session.grace_over())

    def _perform_soon(self, actions: list[Action]) -> None:
        task = asyncio.create_task(self._perform(actions))
        task.add_done_callback(_log_failure)

    def view(self, closed_at: float | None = None) -> ConnectionView:
        """What the inspector shows of it now."""
        session, sender, now = self.session, self.sender, time.time()
        age, lanes = now - self.opened_at, tuple(self._lane_view(key) for key in session.lanes)
        return ConnectionView(
            self.id, self.tenant, self.key, self.peer, self.user_agent, session.state.value,
            self.opened_at, age, max(0.0, session.limits.connection_cap_s - age), lanes,
            self._running_views(now), session.active, session.queued_bytes, self.received_bytes,
            self.received_frames, sender.sent_bytes, sender.sent_events, sender.queue.qsize(),
            sender.queue.maxsize, tuple(self.connection.timeline), closed_at,
        )  # fmt: skip

    def _running_views(self, now: float) -> tuple[RunningView, ...]:
        views = []
        for running in sorted(self.connection.working.values(), key=lambda running: running.began):
            lane = None if running.socket is None else running.socket.lane
            views.append(RunningView(running.id, lane, now - running.began))
        return tuple(views)

    def _lane_view(self, key: LaneKey) -> LaneView:
        lane = self.session.lanes[key]
        oldest = next((work for work in lane.queue if isinstance(work, Create)), None)
        waited = None if oldest is None else self.loop.time() - oldest.received_at
        return LaneView(key, lane.busy, len(lane.queue), waited)

    # --- turns ------------------------------------------------------------------------------------

    def _start(self, lane: LaneKey, work: Create | Due) -> None:
        task = asyncio.create_task(self._turn(lane, work), name=f"ws-lane-{lane}")
        task.add_done_callback(_log_failure)
        self.lanes[lane] = task

    async def _turn(self, lane: LaneKey, work: Create | Due) -> None:
        """Down into core once; back when the response (and its successors) has settled or was
        refused."""
        try:
            if isinstance(work, Due):
                await self.connection.steered(work)
            else:
                await self.connection.respond(lane, work.body, self.loop.time() - work.received_at)
        except ApiError as error:
            await self._perform([self.session.error(error, lane)])
        except Exception:
            log.exception("could not start a response on lane %r", lane)
            await self._perform([self.session.error(errors.server_error(), lane)])
        finally:
            self.lanes.pop(lane, None)
            await self._perform(self.session.turn_finished(lane))

    async def _steer(self, steer: Steer) -> None:
        try:
            due = await self.connection.steer(steer.body, steer.size)
        except SteerRejected as rejected:
            await self._perform([self.session.steer_failed(steer.body, rejected)])
            return
        if due is not None:
            await self._perform(self.session.successor(due))

    # --- the end ----------------------------------------------------------------------------------

    async def _disconnected(self, sender: asyncio.Task[None]) -> None:
        self.session.disconnected()
        self.connection.disconnected()
        self.sender.abandon()
        await asyncio.gather(*self.lanes.values(), return_exceptions=True)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        self.connection.close()


class WebSocketApi:
    """The WebSocket route on `/v1/responses` (§3.1: it shares the create path)."""

    def __init__(self, runtime: Runtime, limits: WebSocketLimits, admission: Admission) -> None:
        self.runtime = runtime
        self.limits = limits
        self.admission = admission

    async def endpoint(self, websocket: WebSocket) -> None:
        if not self.limits.enabled:
            await websocket.send_denial_response(_upgrade_required())
            return
        responses = self.runtime.responses
        served = sorted(responses.served_models)
        # The model is named only when one name serves (with aliases, Codex may be using another).
        model = served[0] if len(served) == 1 else None
        await websocket.accept(headers=handshake.headers(self.limits.max_message_bytes, model))
        shell = Shell(websocket, responses, self.limits, self.admission)
        CONNECTION_ID.set(shell.connection.id)  # for the log lines of this connection's tasks
        responses.metrics.websocket_connections.inc()
        self.runtime.connections.add(shell)
        span = connection_span(shell.connection.id, dict(websocket.headers))
        try:
            with span:
                await shell.serve()
        finally:
            self.runtime.connections.discard(shell)
            self.runtime.closed.append(shell.view(closed_at=time.time()))
            responses.metrics.websocket_connections.dec()


def _upgrade_required() -> JSONResponse:
    error = errors.websocket_disabled()
    return JSONResponse(error.http_body(), status_code=error.status)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("websocket task failed", exc_info=task.exception())
