"""A client may chain from a response the instant its terminal event arrives, a moment before
the server has stored (HTTP) or cached (WebSocket) it: that must work, every time."""

from __future__ import annotations

import httpx
import orjson

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer
from tests.ws_client import RawSocket


def test_http_chaining_right_after_the_stream_ends(scripted_server: TetherServer) -> None:
    url = scripted_server.base_url + "/responses"
    previous = None
    with httpx.Client(timeout=30) as client:
        for turn in range(20):
            body = {
                "model": SCRIPTED,
                "input": f"turn {turn}",
                "stream": True,
                "previous_response_id": previous,
            }
            with client.stream("POST", url, json=body) as reply:
                assert reply.status_code == 200, reply.read()
                for line in reply.iter_lines():
                    if line.startswith("data: "):
                        event = orjson.loads(line[6:])
                        if event["type"] == "response.completed":
                            previous = event["response"]["id"]
                            break  # chain at once, without reading the rest of the body


def test_another_lane_chains_right_after_the_terminal_event(scripted_server: TetherServer) -> None:
    with RawSocket(scripted_server) as ws:
        previous = None
        for turn in range(20):
            lane = f"lane-{turn % 2}"
            ws.create(stream_id=lane, input=f"turn {turn}", store=False, previous_response_id=previous)
            events = ws.until_done()
            assert events[-1]["type"] == "response.completed", events[-1]
            previous = events[-1]["response"]["id"]
