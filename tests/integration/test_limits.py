"""Limits through real sockets: a key's request rate, queued creates, open connections.

Every refusal is an error from the catalogue (429 `rate_limit_exceeded` with `retry-after`, or
503 when the whole server is full), and the caller can go on once it has waited.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer
from tests.ws_client import RawSocket

KEYS = "alice sk-alice\nbob sk-bob\n"


def serve(folder: Path, *flags: str) -> Iterator[TetherServer]:
    (folder / "keys").write_text(KEYS)
    server = TetherServer(folder / "tether.db", "--api-keys-file", str(folder / "keys"), *flags).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rate_limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TetherServer]:
    yield from serve(tmp_path_factory.mktemp("rate"), "--rate-limit-rps", "2", "--rate-limit-burst", "2")


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TetherServer]:
    yield from serve(
        tmp_path_factory.mktemp("crowded"),
        "--ws-max-active-responses", "1", "--ws-max-queued-creates", "2", "--scripted-decode-us", "20000",
        "--ws-max-connections-per-key", "2", "--ws-max-connections", "3", "--ws-max-queued-bytes", "65536",
    )  # fmt: skip


def client(server: TetherServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def test_http_requests_over_a_key_s_rate_get_429_with_retry_after(rate_limited: TetherServer) -> None:
    alice, bob = client(rate_limited, "sk-alice"), client(rate_limited, "sk-bob")
    time.sleep(1.0)  # a full bucket
    alice.models.list()
    alice.models.list()
    with pytest.raises(openai.RateLimitError) as refused:
        alice.models.list()
    assert refused.value.code == "rate_limit_exceeded"
    assert refused.value.response.headers["retry-after"] == "1"
    assert "x-should-retry" not in refused.value.response.headers  # retrying is the right move
    assert bob.models.list().data  # another key has its own rate
    time.sleep(1.0)
    assert alice.responses.create(model=SCRIPTED, input="x").status == "completed"


def test_websocket_creates_count_against_the_rate_and_the_socket_stays_usable(
    rate_limited: TetherServer,
) -> None:
    time.sleep(1.0)
    with RawSocket(rate_limited, key="sk-alice") as ws:
        for _ in range(3):
            ws.create(input="x", store=False)
        events = [ws.recv() for _ in range(40)]
        errors = [e for e in events if e["type"] == "error"]
        assert len(errors) == 1 and errors[0]["status"] == 429
        assert errors[0]["error"]["code"] == "rate_limit_exceeded"
        assert errors[0]["error"]["headers"]["retry-after"] == "1"
        assert sum(e["type"] == "response.completed" for e in events) <= 2
        time.sleep(1.0)
        assert ws.turn(input="again", store=False)[-1]["type"] == "response.completed"


def refusals_until_completed(ws: RawSocket, completed: int) -> list[dict[str, Any]]:
    """The `error` events that arrive before `completed` responses have completed."""
    terminal, refused = 0, []
    while terminal < completed:
        event = ws.recv()
        terminal += event["type"] == "response.completed"
        if event["type"] == "error":
            refused.append(event)
    return refused


def test_queued_creates_beyond_the_bound_get_429(crowded: TetherServer) -> None:
    with RawSocket(crowded, key="sk-alice") as ws:
        for n in range(4):  # one runs, two wait, the fourth is refused
            ws.create(input=f"turn {n}", store=False, max_output_tokens=20)
        refused = refusals_until_completed(ws, 3)
        assert len(refused) == 1 and refused[0]["status"] == 429
        assert "already waiting on this connection" in refused[0]["error"]["message"]


def test_queued_bytes_beyond_the_bound_get_429_and_the_socket_stays_usable(crowded: TetherServer) -> None:
    """A create whose frame would take the waiting ones past 64 KiB is refused; the others run."""
    big = "word " * 8000  # 40 KB
    with RawSocket(crowded, key="sk-alice") as ws:
        ws.create(input="runs", store=False, max_output_tokens=20)
        ws.create(input=big, store=False, max_output_tokens=2)  # waits: 40 KB queued
        ws.create(input=big, store=False, max_output_tokens=2)  # 80 KB would pass the bound
        refused = refusals_until_completed(ws, 2)
        assert len(refused) == 1 and refused[0]["status"] == 429
        assert refused[0]["error"]["code"] == "rate_limit_exceeded"
        assert "the maximum of 65536" in refused[0]["error"]["message"]
        assert ws.turn(input=big, store=False, max_output_tokens=2)[-1]["type"] == "response.completed"


def test_connections_per_key_and_in_total_are_refused_before_the_upgrade(crowded: TetherServer) -> None:
    def refusal(key: str) -> Response:
        with pytest.raises(InvalidStatus) as refused:
            RawSocket(crowded, key=key)
        return refused.value.response

    first, second = RawSocket(crowded, key="sk-alice"), RawSocket(crowded, key="sk-alice")
    try:
        over_key = refusal("sk-alice")
        assert over_key.status_code == 429 and over_key.headers["retry-after"] == "1"
        with RawSocket(crowded, key="sk-bob") as third:
            over_total = refusal("sk-bob")
            assert over_total.status_code == 503
            assert b"maximum of 3 WebSocket connections" in over_total.body
            assert third.turn(input="still served", store=False)[-1]["type"] == "response.completed"
        first.ws.close()
        deadline = time.monotonic() + 10
        while True:  # the server notices the close a moment later
            try:
                RawSocket(crowded, key="sk-alice").ws.close()
                break
            except InvalidStatus:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        first.ws.close()
        second.ws.close()
