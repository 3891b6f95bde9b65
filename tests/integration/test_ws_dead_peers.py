"""Peers that stop reading or vanish: the server cuts them off, and their responses stop.

Both cases hold a socket open forever on a stock server: a reader that has stopped makes every
send wait, and a half-open TCP connection never answers a ping.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer
from tests.ws_client import raw_upgrade

STALL_S = 1.0


@pytest.fixture(scope="module")
def stall_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TetherServer]:
    """Cuts off a reader after STALL_S; pings at the default 20 s, so they play no part here."""
    process = TetherServer(
        tmp_path_factory.mktemp("stall") / "tether.db",
        "--ws-send-stall-s", str(STALL_S), "--ws-send-queue-events", "16",
    ).start()  # fmt: skip
    yield process
    process.stop()


@pytest.fixture(scope="module")
def ping_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TetherServer]:
    """Pings every 0.5 s and gives up after 0.5 s without a pong."""
    os.environ["TETHER_WS_PING_INTERVAL_S"] = "0.5"
    os.environ["TETHER_WS_PING_TIMEOUT_S"] = "0.5"
    try:
        process = TetherServer(tmp_path_factory.mktemp("ping") / "tether.db").start()
    finally:
        del os.environ["TETHER_WS_PING_INTERVAL_S"], os.environ["TETHER_WS_PING_TIMEOUT_S"]
    yield process
    process.stop()


def open_connections(server: TetherServer) -> float:
    metrics = httpx.get(f"http://127.0.0.1:{server.port}/metrics").text
    found = re.search(r"^tether_websocket_connections (\S+)$", metrics, re.MULTILINE)
    assert found is not None
    return float(found.group(1))


def wait_for(condition: object, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def stalling_client(server: TetherServer) -> ClientConnection:
    """A small receive buffer, a one-frame queue and no compression: once it stops reading, it
    stops taking bytes almost at once, and the server's buffers fill within a second."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    url = server.base_url.replace("http://", "ws://") + "/responses"
    return connect(url, sock=sock, max_queue=1, max_size=None, compression=None, close_timeout=0.1)


def test_a_client_that_stops_reading_is_cut_off_and_its_response_stops(stall_server: TetherServer) -> None:
    server = stall_server
    client = server.client()
    with stalling_client(server) as ws:
        ws.send(f'{{"type":"response.create","model":"{SCRIPTED}","input":"x","store":true,'
                '"max_output_tokens":1000000}')  # fmt: skip
        created = str(ws.recv(timeout=10))
        response_id = re.search(r'"id":"(resp_[^"]+)"', created).group(1)  # type: ignore[union-attr]
        # From here on the client reads nothing, while a million tokens wait to be sent.

        def ended() -> bool:
            return client.responses.retrieve(response_id).status != "in_progress"

        # (Polled through the cheap metric first: a snapshot of a growing response is not.)
        assert wait_for(lambda: open_connections(server) == 0), "the stalled connection is still open"
        assert wait_for(ended), "the response of the stalled client is still running"
    stored = client.responses.retrieve(response_id)
    assert stored.status == "incomplete" and stored.incomplete_details is not None
    assert stored.incomplete_details.reason == "interrupted"
    assert f"client stopped reading for {STALL_S:g} s" in server.log_path.read_text()


def test_a_half_open_connection_is_reaped_by_the_ping_timeout(ping_server: TetherServer) -> None:
    """A peer that completed the handshake and then went silent: never answers a ping."""
    server = ping_server
    before = open_connections(server)
    sock = raw_upgrade(server)
    try:
        assert wait_for(lambda: open_connections(server) == before, seconds=10)
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):  # aborted: the end may come as a reset
            while sock.recv(4096):  # pings, maybe the close frame, then the end of the stream
                pass
    finally:
        sock.close()


def test_a_stalled_peer_that_misses_pings_is_cut_off_at_the_ping_timeout(ping_server: TetherServer) -> None:
    """Unsent bytes are queued and pongs never come: closing would wait for the peer to read
    (forever); the server aborts instead, long before its 60 s stall limit."""
    with stalling_client(ping_server) as ws:
        ws.send(f'{{"type":"response.create","model":"{SCRIPTED}","input":"x","max_output_tokens":1000000}}')
        ws.recv(timeout=10)
        assert wait_for(lambda: open_connections(ping_server) == 0, seconds=15), "still open"
