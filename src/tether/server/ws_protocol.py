"""uvicorn's sans-I/O WebSocket protocol, with three things a hostile or dead peer must not do.

uvicorn waits for the transport to drain before each send, which is what keeps a slow reader from
growing server memory. But a peer that stops reading entirely keeps that wait going forever, and
on a keepalive timeout uvicorn calls `transport.close()`, which first waits for the unsent bytes
to drain, again forever. Both end here by aborting the TCP connection; the application then
receives a disconnect, and the connection's responses stop like any client that left (D9).

    - a send that has waited `stall_s` for the peer to read: close frame 1013 (try again later;
      the SDKs reconnect after it, where 1008 would end Codex's WebSocket use), then abort;
    - a ping unanswered within `ws_ping_timeout` (half-open TCP): close frame 1011, then abort;
    - a text frame that is not UTF-8: close 1007, as uvicorn does, but logged as the client's
      fault in one line instead of as a server error with a traceback.

The close frame of an abort reaches a peer only if its buffers still have room.

These are overrides of uvicorn's own methods, so they hold only for the uvicorn versions that have
them (pyproject.toml pins the tested range). On another, where one is missing, the guard would
silently never run: `guarded_protocol` refuses instead (`IncompatibleUvicorn`).
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

log = logging.getLogger(__name__)
# The methods of uvicorn's protocol overridden below (keepalive pings came in uvicorn 0.44).
HOOKS = ("send", "keepalive_timeout", "send_receive_event_to_app", "handle_parser_exception")


class IncompatibleUvicorn(RuntimeError):
    """The installed uvicorn lacks a method Tether's WebSocket guards override."""


def missing_hooks(protocol: type = WebSocketsSansIOProtocol) -> list[str]:
    return [name for name in HOOKS if not callable(getattr(protocol, name, None))]


def guarded_protocol(stall_s: float) -> type[WebSocketsSansIOProtocol]:
    """The protocol class for uvicorn's `ws=`, cutting off peers that stop reading for `stall_s`."""
    missing = missing_hooks()
    if missing:
        raise IncompatibleUvicorn(
            f"uvicorn {uvicorn.__version__} has no {', '.join(missing)} on its WebSocket protocol, "
            "which Tether's guards against stalled and silent peers override. Install the version "
            "pyproject.toml names (pip install -e .)."
        )

    class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
        async def send(self, message: ASGISendEvent) -> None:
            if not self.writable.is_set():
                try:
                    await asyncio.wait_for(self.writable.wait(), stall_s)
                except TimeoutError:
                    self._cut_off(1013, f"client stopped reading for {stall_s:g} s")
                    raise ClientDisconnected() from None
            await super().send(message)

        def keepalive_timeout(self) -> None:
            self.pong_timer = None
            self.pending_ping_payload = None
            if not self.close_sent and not self.transport.is_closing():
                self._cut_off(1011, "keepalive ping timeout")

        def send_receive_event_to_app(self) -> None:
            if self.curr_msg_data_type == "text" and not self.close_sent and not _is_utf8(self.frames):
                self.frames = []
                log.info("closing WebSocket from %s: a text frame is not UTF-8", self.client)
                self.conn.send_close(1007, "invalid UTF-8")
                self.handle_parser_exception()  # uvicorn's: disconnect the app, send, close
                return
            super().send_receive_event_to_app()

        def _cut_off(self, code: int, reason: str) -> None:
            log.warning("closing WebSocket from %s: %s", self.client, reason)
            if not self.close_sent and self.conn.state is State.OPEN:
                self.conn.send_close(code, reason)
                self.transport.write(b"".join(self.conn.data_to_send()))
                self.close_sent = True
            self.transport.abort()  # not close(): that would wait for the peer to read first

    return GuardedWebSocketProtocol


def _is_utf8(frames: list[bytes]) -> bool:
    try:
        b"".join(frames).decode()
    except UnicodeDecodeError:
        return False
    return True
