"""Graceful shutdown: on SIGTERM (or Ctrl-C) the server drains before it closes anything.

1. It stops accepting connections (so a load balancer's readiness probe fails at once). Idle HTTP
   keep-alive connections close; a busy one closes after its current request.
2. Each WebSocket drains: what it accepted finishes, a new create gets a 503 error event, and
   the socket closes with 1012 (service restart, which the SDKs reconnect after) once idle.
3. After `grace_s` at most, what still runs is interrupted: it ends `incomplete` / `interrupted`,
   and every stream reading it gets that terminal event (SSE ends; a WebSocket sends it, then
   closes 1012), within `final_flush_s`. WebSocket creates still queued are refused (503).
4. uvicorn's own shutdown closes whatever is left (a peer too stalled to take its last events)
   within `final_close_s`, and the app's lifespan stores what it interrupted.
5. The process exits 0: a SIGTERM the server shut down for is a clean stop, not a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Iterator

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from tether.config import Shutdown
from tether.server.runtime import Runtime


class GracefulServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        runtime: Runtime,
        settings: Shutdown,
        on_ready: Callable[[], None] = lambda: None,
    ) -> None:
        """`config.timeout_graceful_shutdown` should be `settings.final_close_s`; `on_ready` is
        called once the app has started and the server listens."""
        super().__init__(config)
        self.runtime = runtime
        self.settings = settings
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_ready()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            if not isinstance(connection, WebSocketsSansIOProtocol):
                connection.shutdown()  # HTTP: close when idle, or after the current request
        for ws in list(self.runtime.connections):
            ws.shutdown()
        await self._wait_while_busy(self.settings.grace_s)
        # Queued creates are refused before anything is interrupted, so that a client reads the
        # refusal ahead of the terminal event and the close (a peer too stalled to take it is
        # not waited for past the final flush).
        refusals = asyncio.gather(*(ws.grace_over() for ws in list(self.runtime.connections)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(refusals, self.settings.final_flush_s)
        self.runtime.responses.interrupt_all()
        await self._wait_while_busy(self.settings.final_flush_s)
        await super().shutdown(sockets)

    async def _wait_while_busy(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self.runtime.busy and loop.time() < deadline:
            await asyncio.sleep(0.05)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # uvicorn re-raises the signal it stopped for, so a drained SIGTERM would still end
            # the process "killed by signal"; Ctrl-C keeps its usual meaning.
            self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]
