"""Core's side of one WebSocket connection: whose it is, its cache (§8.2), its steering (§8.6),
what it started (D9).

The shell (`server/websocket.py`) hands each create that its session starts to `respond`, once,
and gets control back when the response has settled (or was refused, as an `ApiError` to send);
a steered response's successor runs within the same call, in the lane turn of the response it
steers. Everything in between — parsing the body, resolving the parent in the cache, running
the turn, recording how it ended by the cache's rules, steering — happens in core.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from tether.core import turn
from tether.core.connection_cache import ConnectionCache
from tether.core.event_log import EventSink
from tether.core.responses import Responses
from tether.core.running import Running, SocketTurn
from tether.core.steering import Due, Steering, SteerLimits, Successor
from tether.core.timeline import new_timeline
from tether.protocol import steering
from tether.protocol.client_events import LaneKey
from tether.protocol.errors import ApiError
from tether.protocol.request import CreateRequest, parse_create, previous_response_id_of

log = logging.getLogger(__name__)


class Connection:
    def __init__(
        self,
        responses: Responses,
        tenant: str,
        sender: EventSink,
        cached_responses: int,
        steer_limits: SteerLimits,
    ) -> None:
        """`tenant`: every response of the connection belongs to it; `sender`: where its events go;
        `cached_responses`: how many its cache keeps besides each lane's latest."""
        self.responses = responses
        self.tenant = tenant
        self.sender = sender
        self.cache = ConnectionCache(responses.history(tenant), responses.backend, cached_responses)
        self.steering = Steering(sender, steer_limits, cached_responses, responses.metrics.steered)
        self.working: dict[str, Running] = {}  # started here, work not over (a warm-up's prefill too)
        self.gone = False
        self.id = secrets.token_hex(8)
        self.timeline = new_timeline()  # its latest turns, for the inspector

    async def respond(self, lane: LaneKey, body: dict[str, Any], queued_s: float = 0.0) -> None:
        """Run the create `body` on `lane` until its response has settled, and its successors
        after it when it is steered; it has waited `queued_s` on the connection to start.

        Raises what refused it before a response existed — the `ApiError` of phase 2 of §4.1.2,
        or a bug — once the cache has applied its rule to the refusal."""
        try:
            request = self.steering.claim(parse_create(body, "ws"))
            running = await self._start(lane, request, queued_s)
        except Exception:
            self.cache.refused(lane, previous_response_id_of(body))
            raise
        await self._follow(lane, running)

    async def steer(self, body: Mapping[str, Any], size: int) -> Due | None:
        """A `response.steer` (§4.3) of `size` bytes: queued for its target, which replies; `Due`
        when its successor needs a lane turn of its own. Raises `SteerRejected` for a steer that
        reached no response (invalid, or no such target): the caller numbers that reply."""
        try:
            request = steering.parse_steer(body)
        except steering.SteerRejected as invalid:
            self.responses.metrics.steered(invalid.code)
            raise
        return await self.steering.steer(request, body, size)

    async def steered(self, due: Due) -> None:
        """The lane turn the session started for a `Due` successor."""
        successor = await self.steering.due(due.target)
        if successor is not None:
            running = await self._start_successor(due.lane, successor)
            if running is not None:
                await self._follow(due.lane, running)

    async def _start(self, lane: LaneKey, request: CreateRequest, queued_s: float = 0.0) -> Running:
        socket = SocketTurn(lane, self.cache, self.sender, self.id, self.timeline, queued_s)
        running = await self.responses.start(request, self.tenant, socket)
        self.steering.started(running)
        self._track(running)
        return running

    async def _follow(self, lane: LaneKey, running: Running | None) -> None:
        """Until the response has settled, then its successor's, as long as one is steered."""
        while running is not None:
            await running.lifecycle.settled()
            successor = await self.steering.after(running.id)
            running = None if successor is None else await self._start_successor(lane, successor)

    async def _start_successor(self, lane: LaneKey, successor: Successor) -> Running | None:
        """§8.6 step 4: its `response.created` commits the steers; one that cannot start fails them."""
        if self.gone:
            return None
        try:
            running = await self._start(lane, successor.request)
        except ApiError as error:
            await self.steering.failed(successor, error.message)
            return None
        except Exception:
            log.exception("could not start the successor of %s", successor.target.id)
            await self.steering.failed(successor, "the server failed")
            return None
        self.steering.committed(successor)
        return running

    def _track(self, running: Running) -> None:
        """D9: a disconnect stops the work of what this connection started, until it is over."""
        assert running.task is not None
        self.working[running.id] = running
        running.task.add_done_callback(lambda _: self.working.pop(running.id, None))
        if self.gone:  # the client left while the response was being started
            running.cancel.cancel(turn.INTERRUPTED)

    def disconnected(self) -> None:
        """D9: the client is gone; what it started is interrupted (a `store: true` response is
        kept as `incomplete` / `interrupted`), and the steers queued are lost with it."""
        self.gone = True
        for running in list(self.working.values()):
            running.cancel.cancel(turn.INTERRUPTED)

    def close(self) -> None:
        """Every lane's turn is over: the cache dies with the socket (§8.2 rule 8)."""
        self.cache.clear()
