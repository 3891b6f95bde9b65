"""A connection's life (§3.7, §8.9): the cap, disconnects, and a reader too slow to keep up."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest
from websockets.exceptions import ConnectionClosed

from tests.server_process import TetherServer
from tests.ws_client import RawSocket, assert_error_shape


def wait_until_finished(client: openai.OpenAI, response_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while (response := client.responses.retrieve(response_id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return response.model_dump()


def closed_code(ws: RawSocket) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=15)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def test_an_idle_connection_past_the_cap_is_told_and_closed_with_1001(limited_server: TetherServer) -> None:
    """D5 with the cap configured to 3 s."""
    with RawSocket(limited_server) as ws:
        error = ws.recv(timeout=15)
        assert error["type"] == "error" and error["status"] == 400
        assert error["error"]["code"] == "websocket_connection_limit_reached"
        assert error["error"]["message"].startswith(
            "Responses websocket connection limit reached (3 seconds)."
        )
        assert closed_code(ws) == 1001


def test_the_cap_never_cuts_a_stream_and_refuses_later_creates(limited_server: TetherServer) -> None:
    with RawSocket(limited_server) as ws:
        ws.create(stream_id="long", input="x", max_output_tokens=200)  # 4 s at 20 ms a token
        events = [ws.recv()]
        while events[-1]["type"] != "response.output_text.delta":
            events.append(ws.recv())
        time.sleep(3.2)  # now past the cap, mid-stream
        ws.create(stream_id="late", input="y")
        refused = None
        while events[-1]["type"] != "response.completed":
            event = ws.recv()
            if event["type"] == "error":
                refused = event
            else:
                events.append(event)
        assert refused is not None and refused["stream_id"] == "late"
        assert refused["error"]["code"] == "websocket_connection_limit_reached"
        assert events[-1]["response"]["usage"]["output_tokens"] == 200
        assert_closed_for_the_cap(ws)


def assert_closed_for_the_cap(ws: RawSocket) -> None:
    """D5: the close that the cap causes comes right after the error that says so."""
    notice = ws.recv(timeout=15)
    assert_error_shape(notice)
    assert notice["error"]["code"] == "websocket_connection_limit_reached" and "stream_id" not in notice
    assert closed_code(ws) == 1001


def test_a_cap_passed_mid_stream_is_announced_before_the_close(limited_server: TetherServer) -> None:
    with RawSocket(limited_server) as ws:
        events = ws.turn(input="x", max_output_tokens=200)  # 4 s at 20 ms a token: past the 3 s cap
        assert events[-1]["type"] == "response.completed"
        assert_closed_for_the_cap(ws)


def test_a_disconnect_mid_stream_stops_generation_and_keeps_a_stored_response(
    slow_server: TetherServer,
) -> None:
    """D9: the response is stored as incomplete / interrupted with what was produced."""
    with RawSocket(slow_server) as ws:
        ws.create(input="long", max_output_tokens=500)
        response_id = ws.recv()["response"]["id"]
        deltas = 0
        while deltas < 3:
            deltas += ws.recv()["type"] == "response.output_text.delta"
    stored = wait_until_finished(slow_server.client(), response_id)
    assert stored["status"] == "incomplete"
    assert stored["incomplete_details"] == {"reason": "interrupted"}
    text = stored["output"][0]["content"][0]["text"]  # type: ignore[index]
    assert 3 * 4 <= len(text) < 500 * 4
    assert stored["usage"]["output_tokens"] == len(text) // 4  # type: ignore[index]


def test_a_store_false_response_cut_by_a_disconnect_leaves_nothing(slow_server: TetherServer) -> None:
    with RawSocket(slow_server) as ws:
        ws.create(input="long", max_output_tokens=500, store=False)
        response_id = ws.recv()["response"]["id"]
    time.sleep(0.5)
    with pytest.raises(openai.NotFoundError):
        slow_server.client().responses.retrieve(response_id)


def rss_bytes(server: TetherServer) -> int:
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_slow_reader_pauses_generation_instead_of_growing_memory(scripted_server: TetherServer) -> None:
    """The sender queue is bounded: when the client stops reading, the model waits for it.

    Without compression, so the kernel's socket buffers (a few MB on loopback) fill long
    before the 200k-token answer is done; deflate would shrink the near-identical deltas enough
    to fit them all."""
    client = scripted_server.client()
    with RawSocket(scripted_server, max_queue=1, compression=None, close_timeout=1) as ws:
        ws.create(input="flood", max_output_tokens=200_000)
        response_id = ws.recv()["response"]["id"]
        time.sleep(2)
        produced_before, rss_before = _produced(client, response_id), rss_bytes(scripted_server)
        time.sleep(2)
        produced_after, rss_after = _produced(client, response_id), rss_bytes(scripted_server)
        assert 0 < produced_before < 200_000 * 4  # started, and far from finished
        assert produced_after - produced_before < 64 * 1024  # stalled while nobody reads
        assert rss_after - rss_before < 16 * 1024 * 1024
        numbers = [ws.recv()["sequence_number"] for _ in range(2000)]  # nothing was dropped
        assert numbers == list(range(1, 2001))
    assert wait_until_finished(client, response_id)["status"] == "incomplete"


def _produced(client: openai.OpenAI, response_id: str) -> int:
    output = client.responses.retrieve(response_id).output
    return len(output[0].content[0].text) if output else 0  # type: ignore[union-attr]
