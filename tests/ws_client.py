"""A raw `websockets` client for WebSocket-mode tests: send events, read them back by lane."""

from __future__ import annotations

import base64
import json
import os
import socket
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer

TERMINAL = {"response.completed", "response.failed", "response.incomplete"}


def assert_error_shape(event: dict[str, Any]) -> None:
    """An `error` event as `@ai-sdk/openai` 4.x validates it (else its user sees "Type validation
    failed" instead of the message): a numeric `sequence_number`, and a nested `error` with string
    `type`, `code` and `message` and a string or null `param`. Codex needs `status` too."""
    assert event["type"] == "error"
    assert isinstance(event["sequence_number"], int) and isinstance(event["status"], int)
    error = event["error"]
    assert all(isinstance(error[key], str) for key in ("type", "code", "message")), error
    assert error["param"] is None or isinstance(error["param"], str)


class RawSocket:
    def __init__(self, server: TetherServer, key: str | None = None, **options: Any) -> None:
        """Authenticated with `key`, else with the server's own key when it has one."""
        url = server.base_url.replace("http://", "ws://") + "/responses"
        key = key or server.api_key
        headers = {"Authorization": f"Bearer {key}"} if key else None
        self.ws: ClientConnection = connect(url, max_size=None, additional_headers=headers, **options)

    def __enter__(self) -> RawSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.ws.close()

    def send(self, event: dict[str, Any] | str | bytes) -> None:
        self.ws.send(event if isinstance(event, str | bytes) else json.dumps(event))

    def recv(self, timeout: float = 30) -> dict[str, Any]:
        message = self.ws.recv(timeout=timeout)
        assert isinstance(message, str), "the server sends text frames only"
        event: dict[str, Any] = json.loads(message)
        return event

    def create(self, **fields: Any) -> None:
        self.send({"type": "response.create", "model": SCRIPTED, **fields})

    def until_done(self) -> list[dict[str, Any]]:
        """Events up to and including one terminal event or error (single lane in flight)."""
        events = []
        while True:
            events.append(self.recv())
            if events[-1]["type"] in TERMINAL or events[-1]["type"] == "error":
                return events

    def turn(self, **fields: Any) -> list[dict[str, Any]]:
        self.create(**fields)
        return self.until_done()

    def steer(self, target: str, text: str | list[dict[str, Any]]) -> None:
        self.send({"type": "response.steer", "previous_response_id": target, "input": text})

    def until(self, kind: str) -> list[dict[str, Any]]:
        """Events up to and including the first of type `kind`."""
        events = [self.recv()]
        while events[-1]["type"] != kind:
            events.append(self.recv())
        return events

    def steered(self, deltas: int, text: str) -> list[dict[str, Any]]:
        """The events of the response just created, steered with `text` once `deltas` of its
        text deltas have come, up to its terminal event."""
        events = [self.recv()]
        while events[-1]["type"] not in TERMINAL:
            events.append(self.recv())
            if deltas and sum(event["type"] == "response.output_text.delta" for event in events) == deltas:
                self.steer(events[0]["response"]["id"], text)
                deltas = 0
        return events


def raw_upgrade(server: TetherServer) -> socket.socket:
    """A TCP socket that has completed the WebSocket handshake and nothing more: for peers no
    WebSocket library would play (silent ones, ones sending invalid frames)."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (f"GET /v1/responses HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    )  # fmt: skip
    assert sock.recv(4096).startswith(b"HTTP/1.1 101")
    return sock
