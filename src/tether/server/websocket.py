"""WebSocket mode (spec §3, §8): the shell around `session.Session`.

It alone touches the socket, the clock and tasks. Frames go into the session; its actions are
performed here: `Send` through the connection's one bounded sender, `StartTurn` as a task per
running lane, `Close` after the sender has flushed. A turn starts with phase 2 of §4.1.2 (body,
chain, D10), resolving parents in the connection's cache before the store.

On disconnect (D9), for any reason: running responses are cancelled (a `store: true` one is kept
as `incomplete` / `interrupted`), queued creates are dropped, and the cache dies with the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

import orjson
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from tether.config import Settings
from tether.core import turn
from tether.core.connection_cache import CachedResponse, ConnectionCache
from tether.core.event_log import Event
from tether.core.responses import Responses, Running
from tether.protocol import errors
from tether.protocol.errors import ApiError
from tether.protocol.events import Phase
from tether.protocol.items import parse_item
from tether.protocol.request import parse_create
from tether.server.admission import Admission
from tether.server.auth import caller_of
from tether.server.session import Action, Close, LaneKey, Send, Session, SessionLimits, StartTurn

log = logging.getLogger(__name__)

_CLOSE = object()  # sentinel that ends the sender


class Sender:
    """The connection's one outbound queue, bounded: a slow reader makes generation wait (§8)."""

    def __init__(self, websocket: WebSocket, max_events: int) -> None:
        self.websocket = websocket
        self.queue: asyncio.Queue[Event | object] = asyncio.Queue(max_events)
        self.closed = False
        self.close_with = (1000, "")

    async def emit(self, event: Event) -> None:
        if not self.closed:
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
            await self.websocket.send_text(orjson.dumps(event).decode())
        self.closed = True
        code, reason = self.close_with
        await self.websocket.close(code, reason)


class Connection:
    def __init__(self, websocket: WebSocket, responses: Responses, settings: Settings) -> None:
        self.websocket = websocket
        self.responses = responses
        self.loop = asyncio.get_running_loop()
        limits = SessionLimits(
            max_active=settings.ws_max_active_responses,
            max_named_lanes=settings.ws_max_named_lanes,
            cap_s=settings.ws_connection_cap_s,
            max_queued=settings.ws_max_queued_creates,
        )
        caller = caller_of(websocket.scope)
        admission: Admission = websocket.app.state.admission
        self.session = Session(
            limits, opened_at=self.loop.time(), admit=lambda: admission.request(caller.key)
        )
        self.tenant = caller.tenant  # every response of the connection belongs to it
        self.cache = ConnectionCache(fallback=responses.history(self.tenant), warmth=responses.backend)
        self.sender = Sender(websocket, settings.ws_send_queue_events)
        self.lanes: dict[LaneKey, asyncio.Task[None]] = {}  # the turn running on each lane
        self.working: dict[str, Running] = {}  # started here, work not over (a warm-up's prefill too)
        self.gone = False

    async def serve(self) -> None:
        sender = asyncio.create_task(self.sender.run(), name="ws-sender")
        cap = self.loop.call_later(self.session.limits.cap_s, self._cap_reached)
        try:
            while not sender.done():
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("text") is not None:
                    actions = self.session.receive_text(message["text"], self.loop.time())
                else:
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
                if not self.gone:
                    self._start(action.lane, action.body)
            elif isinstance(action, Close):
                await self.sender.close(action.code, action.reason)

    def _cap_reached(self) -> None:
        self._perform_soon(self.session.cap_reached())

    def shutdown(self) -> None:
        """The server is stopping: let accepted work finish, then close with 1012."""
        self._perform_soon(self.session.shutdown())

    def grace_over(self) -> None:
        """Shutdown's grace has passed: refuse what is still queued (what runs is interrupted)."""
        self._perform_soon(self.session.grace_over())

    def _perform_soon(self, actions: list[Action]) -> None:
        task = asyncio.create_task(self._perform(actions))
        task.add_done_callback(_log_failure)

    # --- turns ------------------------------------------------------------------------------------

    def _start(self, lane: LaneKey, body: dict[str, Any]) -> None:
        task = asyncio.create_task(self._turn(lane, body), name=f"ws-lane-{lane}")
        task.add_done_callback(_log_failure)
        self.lanes[lane] = task

    async def _turn(self, lane: LaneKey, body: dict[str, Any]) -> None:
        parent = body.get("previous_response_id")
        try:
            await self._respond(lane, body, parent if isinstance(parent, str) else None)
        finally:
            self.lanes.pop(lane, None)
            if not self.gone:
                await self._perform(self.session.turn_finished(lane))

    async def _respond(self, lane: LaneKey, body: dict[str, Any], parent: str | None) -> None:
        try:
            request = parse_create(body, "ws")
            running = await self.responses.start(
                request,
                tenant=self.tenant,
                history=self.cache,
                stream_id=lane,
                sender=self.sender,
                transport="ws",
            )
        except ApiError as error:
            await self._refuse(lane, parent, error)
            return
        except Exception:
            log.exception("could not start a response on lane %r", lane)
            await self._refuse(lane, parent, errors.server_error())
            return
        self._track(running)
        self.cache.started(running.id, ended=lambda: running.events.phase is Phase.TERMINAL)
        try:
            final = await self.responses.finish(running)
            if final["status"] in ("completed", "incomplete"):
                outputs = tuple(parse_item(item, "output") for item in final["output"])
                self.cache.remember(lane, CachedResponse(running.id, running.context.items + outputs))
            elif final["status"] == "failed":
                self._evict_failed_parent(lane, parent)
        finally:
            self.cache.settle(running.id)

    def _track(self, running: Running) -> None:
        """D9: a disconnect stops the work of what this connection started, until it is over."""
        assert running.task is not None
        self.working[running.id] = running
        running.task.add_done_callback(lambda _: self.working.pop(running.id, None))
        if self.gone:  # the client left while the response was being started
            running.cancel.cancel(turn.INTERRUPTED)

    async def _refuse(self, lane: LaneKey, parent: str | None, error: ApiError) -> None:
        """No response was made: the lane gets the error, and the parent may be evicted."""
        await self._perform([self.session.error(error, lane)])
        self._evict_failed_parent(lane, parent)

    def _evict_failed_parent(self, lane: LaneKey, parent: str | None) -> None:
        """§8.2 rule 4 (and D10): a failed same-lane continuation evicts its parent; a failed
        fork from another lane leaves that lane's latest alone (rule 5)."""
        if parent is not None and self.cache.is_latest(lane, parent):
            self.cache.evict(parent)

    # --- the end ----------------------------------------------------------------------------------

    async def _disconnected(self, sender: asyncio.Task[None]) -> None:
        self.gone = True
        for running in list(self.working.values()):
            running.cancel.cancel(turn.INTERRUPTED)
        self.sender.abandon()
        await asyncio.gather(*self.lanes.values(), return_exceptions=True)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        self.cache.clear()


async def endpoint(websocket: WebSocket) -> None:
    settings = cast(Settings, websocket.app.state.settings)
    if not settings.websocket:
        await websocket.send_denial_response(_upgrade_required())
        return
    responses: Responses = websocket.app.state.responses
    await websocket.accept(headers=handshake_headers(settings, responses.backend.model_ids))
    connections: set[Connection] = websocket.app.state.ws_connections
    connection = Connection(websocket, responses, settings)
    responses.metrics.websocket_connections.inc()
    connections.add(connection)
    try:
        await connection.serve()
    finally:
        connections.discard(connection)
        responses.metrics.websocket_connections.dec()


def handshake_headers(settings: Settings, model_ids: tuple[str, ...]) -> list[tuple[bytes, bytes]]:
    """What Codex reads from the upgrade response, where Tether has a true answer:

    - `x-codex-websocket-max-message-bytes`: the largest message Tether accepts (larger: 1009);
    - `x-reasoning-included`: the usage Tether reports already covers past reasoning items (they
      cost nothing: the model never sees them), so the client must not add its own estimate;
    - `openai-model`: the model that serves this connection, when the server serves one by one
      name. Codex takes a name other than the one it asked for as a reroute and warns of it (in
      words about flagged accounts), so with aliases, which it may be using, it is not sent.
    """
    headers = {
        "x-codex-websocket-max-message-bytes": str(settings.ws_max_message_bytes),
        "x-reasoning-included": "true",
    }
    if len(model_ids) == 1 and not settings.model_aliases:
        headers["openai-model"] = model_ids[0]
    return [(name.encode(), value.encode()) for name, value in headers.items()]


def _upgrade_required() -> JSONResponse:
    error = errors.websocket_disabled()
    return JSONResponse(error.http_body(), status_code=error.status)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("websocket task failed", exc_info=task.exception())
