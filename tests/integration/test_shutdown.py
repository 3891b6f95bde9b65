"""Graceful shutdown on SIGTERM: running responses finish within the grace period, new work is
refused, WebSockets close with 1012, the process exits 0, and a restart serves stored chains."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer
from tests.ws_client import RawSocket


def serve(tmp_path: Path, grace_s: float) -> TetherServer:
    """A scripted model at 20 ms a token, with `grace_s` to drain at shutdown."""
    return TetherServer(
        tmp_path / "t.db", "--scripted-decode-us", "20000", "--shutdown-grace-s", str(grace_s)
    )


def terminate(server: TetherServer) -> int:
    """SIGTERM, then the exit code once the process has drained and stopped."""
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(timeout=60)
    server.process = None
    return code


def wait_until_not_listening(server: TetherServer) -> None:
    """The first step of the drain closes the listening socket; the others follow in the same
    step of the event loop."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.01)
    raise AssertionError("the server still accepts connections")


def close_code(ws: RawSocket) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=30)
    return closed.value.rcvd.code if closed.value.rcvd else None


def test_a_running_websocket_response_finishes_then_the_socket_closes_1012(tmp_path: Path) -> None:
    server = serve(tmp_path, 30).start()
    try:
        with RawSocket(server) as ws:
            ws.create(input="Long enough to be cut.", store=True, max_output_tokens=60)  # ~1.2 s
            created = ws.recv()["response"]
            exit_code: list[int] = []
            stopper = threading.Thread(target=lambda: exit_code.append(terminate(server)))
            stopper.start()
            wait_until_not_listening(server)  # the drain has begun
            ws.create(input="One more?", store=True, stream_id="late")  # refused, not queued
            events: list[dict[str, Any]] = []
            while not events or events[-1]["type"] != "response.completed":
                events.append(ws.recv())
            refused = [e for e in events if e["type"] == "error"]
            assert len(refused) == 1 and refused[0]["status"] == 503 and refused[0]["stream_id"] == "late"
            assert "shutting down" in refused[0]["error"]["message"]
            assert events[-1]["response"]["usage"]["output_tokens"] == 60
            assert close_code(ws) == 1012
            stopper.join(timeout=60)
        assert exit_code == [0]
        server.start()
        client = server.client()
        assert client.responses.retrieve(created["id"]).status == "completed"
        follow = client.responses.create(model=SCRIPTED, input="After.", previous_response_id=created["id"])
        assert follow.status == "completed"
    finally:
        server.stop()


def test_a_response_longer_than_the_grace_ends_with_its_terminal_event_and_is_stored(
    tmp_path: Path,
) -> None:
    server = serve(tmp_path, 0.5).start()
    try:
        with RawSocket(server) as ws:
            ws.create(input="Very long.", store=True, max_output_tokens=2000)  # ~40 s
            created = ws.recv()["response"]
            while ws.recv()["type"] != "response.output_text.delta":
                pass
            ws.create(input="Queued behind it.", store=True)
            assert terminate(server) == 0
            events = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    events.append(ws.recv(timeout=30))
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
            (refusal,) = [e for e in events if e["type"] == "error"]
            assert refusal["status"] == 503  # the queued create will never start
            assert events[-1]["type"] == "response.incomplete"  # the last event before the close
            assert events[-1]["response"]["incomplete_details"] == {"reason": "interrupted"}
        server.start()
        stored = server.client().responses.retrieve(created["id"])
        assert stored.status == "incomplete" and stored.incomplete_details is not None
        assert stored.incomplete_details.reason == "interrupted"
    finally:
        server.stop()


def test_an_sse_stream_cut_by_the_grace_ends_with_its_terminal_event(tmp_path: Path) -> None:
    """openai-python reads the stream to its end: `response.incomplete`, not a dropped connection."""
    server = serve(tmp_path, 0.5).start()
    try:
        exit_code: list[int] = []
        client = server.client()
        with client.responses.stream(model=SCRIPTED, input="x", max_output_tokens=2000) as stream:
            for event in stream:
                if event.type == "response.output_text.delta" and not exit_code:
                    exit_code.append(-1)
                    threading.Thread(target=lambda: exit_code.append(terminate(server))).start()
        assert event.type == "response.incomplete"  # the last event, then the stream ended cleanly
        final = event.response
        assert final.status == "incomplete" and final.incomplete_details is not None
        assert final.incomplete_details.reason == "interrupted"
        assert final.usage is not None and 0 < final.usage.output_tokens < 2000
        while len(exit_code) < 2:
            threading.Event().wait(0.05)
        assert exit_code[1] == 0
    finally:
        server.stop()


def test_an_sse_response_in_flight_finishes_during_the_grace(tmp_path: Path) -> None:
    server = serve(tmp_path, 30).start()
    try:
        exit_code: list[int] = []
        with server.client().responses.stream(model=SCRIPTED, input="x", max_output_tokens=60) as stream:
            for event in stream:
                if event.type == "response.output_text.delta" and not exit_code:
                    exit_code.append(-1)
                    threading.Thread(target=lambda: exit_code.append(terminate(server))).start()
            final = stream.get_final_response()
        assert final.status == "completed" and final.usage is not None and final.usage.output_tokens == 60
        while len(exit_code) < 2:
            threading.Event().wait(0.05)
        assert exit_code[1] == 0
    finally:
        server.stop()
