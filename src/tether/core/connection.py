"""Core's side of one WebSocket connection: whose it is, its cache (§8.2), what it started (D9).

The shell (`server/websocket.py`) hands each create that its session starts to `respond`, once,
and gets control back when the response has settled (or was refused, as an `ApiError` to send).
Everything in between — parsing the body, resolving the parent in the cache, running the turn,
recording how it ended by the cache's rules — happens in core.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from tether.core import turn
from tether.core.connection_cache import ConnectionCache
from tether.core.event_log import EventSink
from tether.core.responses import Responses
from tether.core.running import Running, SocketTurn
from tether.protocol.client_events import LaneKey
from tether.protocol.request import parse_create, previous_response_id_of

log = logging.getLogger(__name__)


class Connection:
    def __init__(self, responses: Responses, tenant: str, sender: EventSink, cached_responses: int) -> None:
        """`tenant`: every response of the connection belongs to it; `sender`: where its events go."""
        self.responses = responses
        self.tenant = tenant
        self.sender = sender
        self.cache = ConnectionCache(responses.history(tenant), responses.backend, cached_responses)
        self.working: dict[str, Running] = {}  # started here, work not over (a warm-up's prefill too)
        self.gone = False
        self.id = secrets.token_hex(8)

    async def respond(self, lane: LaneKey, body: dict[str, Any]) -> None:
        """Run the create `body` on `lane` until its response has settled.

        Raises what refused it before a response existed — the `ApiError` of phase 2 of §4.1.2,
        or a bug — once the cache has applied its rule to the refusal."""
        try:
            request = parse_create(body, "ws")
            socket = SocketTurn(lane, self.cache, self.sender, self.id)
            running = await self.responses.start(request, self.tenant, socket)
        except Exception:
            self.cache.refused(lane, previous_response_id_of(body))
            raise
        self._track(running)
        await running.lifecycle.settled()

    def _track(self, running: Running) -> None:
        """D9: a disconnect stops the work of what this connection started, until it is over."""
        assert running.task is not None
        self.working[running.id] = running
        running.task.add_done_callback(lambda _: self.working.pop(running.id, None))
        if self.gone:  # the client left while the response was being started
            running.cancel.cancel(turn.INTERRUPTED)

    def disconnected(self) -> None:
        """D9: the client is gone; what it started is interrupted (a `store: true` response is
        kept as `incomplete` / `interrupted`)."""
        self.gone = True
        for running in list(self.working.values()):
            running.cancel.cancel(turn.INTERRUPTED)

    def close(self) -> None:
        """Every lane's turn is over: the cache dies with the socket (§8.2 rule 8)."""
        self.cache.clear()
