"""Hostile input at a live server, while a well-behaved agent keeps working on the same server.

Random and mutated WebSocket frames and HTTP bodies (wrong types, huge strings, deep nesting,
invalid UTF-8, random event types and field combinations) must each get a catalogue error or a
proper response: never a 5xx, never a traceback in what is sent back, never a 1011 close, and
the well-behaved agent never stalls.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer
from tests.ws_client import RawSocket, raw_upgrade

EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
# Close codes a client can earn with bad frames: too big, not UTF-8. Never 1011 (our fault).
EARNED_CLOSES = {1007, 1009}

scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40)
    | st.sampled_from(["", "x" * 100_000, "\u0000", "\ud7ff\ue000", "💥" * 50, "resp_123", SCRIPTED])
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
small_outputs = st.sampled_from([None, -1, 0, 1, 16, 64, "16", 1.5, [], {}])  # never a huge valid cap
items = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "function_call", "function_call_output", "item_reference",
                              "reasoning", "compaction", "nope", 7])},
    optional={"role": st.sampled_from(["user", "assistant", "system", "developer", "tool", 3]),
              "content": values, "call_id": values, "output": values, "id": values,
              "name": values, "arguments": values, "encrypted_content": values},
)  # fmt: skip
creates = st.fixed_dictionaries(
    {"type": st.sampled_from(["response.create"])},
    optional={
        "model": st.sampled_from([SCRIPTED, "gpt-x", "", None, 5]),
        "input": st.one_of(values, st.lists(items, max_size=4)),
        "max_output_tokens": small_outputs,
        "tools": st.one_of(values, st.lists(st.fixed_dictionaries(
            {"type": st.sampled_from(["function", "web_search", "custom", 1])},
            optional={"name": values, "parameters": values, "description": values}), max_size=3)),
        "tool_choice": st.one_of(values, st.sampled_from(["auto", "none", "required"])),
        "stream_id": st.one_of(values, st.sampled_from(["a", "b", "lane-1"])),
        "previous_response_id": values, "store": values, "generate": values, "background": values,
        "instructions": values, "temperature": values, "metadata": values, "stream": values,
        "text": values, "reasoning": values, "include": values, "truncation": values,
    },
)  # fmt: skip
events = creates | st.dictionaries(st.text(max_size=20), values, max_size=5) | st.fixed_dictionaries(
    {"type": st.sampled_from(["response.steer", "response.cancel", "session.update", "", "x" * 300])},
    optional={"input": values, "previous_response_id": values},
)  # fmt: skip
frames = (
    events.map(json.dumps)
    | st.text(max_size=200)
    | st.sampled_from(["[" * 5000 + "]" * 5000, '{"type": "response.create"' * 100, "null", "1e999"])
    | st.binary(max_size=200)
)  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TetherServer]:
    process = TetherServer(tmp_path_factory.mktemp("fuzz") / "tether.db", "--ws-max-message-bytes", "1048576")
    process.start()
    yield process
    process.stop()


class Agent(threading.Thread):
    """The well-behaved client: a chained tool loop over one socket, for as long as the fuzz runs."""

    def __init__(self, server: TetherServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.stop = threading.Event()
        self.turns = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with RawSocket(self.server) as ws:
                previous = None
                while not self.stop.is_set():
                    last = ws.turn(input="Go on.", store=False, previous_response_id=previous)[-1]
                    assert last["type"] == "response.completed", last
                    previous = last["response"]["id"]
                    self.turns += 1
                    self.stop.wait(0.05)  # a steady agent, not a load generator
        except BaseException as exc:
            self.failure = exc


@pytest.fixture(scope="module")
def agent(server: TetherServer) -> Iterator[Agent]:
    running = Agent(server)
    running.start()
    yield running
    running.stop.set()
    running.join(timeout=60)
    assert running.failure is None, running.failure
    assert running.turns > 0 and not running.is_alive()
    assert "Traceback" not in server.log_path.read_text()  # nothing unexpected went wrong inside


def check_sent(raw: str | bytes) -> dict[str, Any]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    assert "Traceback" not in text and 'File "' not in text
    event: dict[str, Any] = json.loads(text)
    if event.get("type") == "error":
        assert event["status"] < 500, event
    return event


@EXAMPLES
@given(frame=frames)
def test_websocket_frames(server: TetherServer, agent: Agent, frame: str | bytes) -> None:
    url = server.base_url.replace("http://", "ws://") + "/responses"
    sentinel = {"type": "response.create", "model": SCRIPTED, "input": "ping", "store": False,
                "metadata": {"sentinel": "yes"}, "max_output_tokens": 16}  # fmt: skip
    with connect(url, max_size=None, close_timeout=1) as ws:
        try:
            ws.send(frame)
            ws.send(json.dumps(sentinel))
            while True:  # until the sentinel's own terminal event: the socket still serves
                event = check_sent(ws.recv(timeout=30))
                response = event.get("response") or {}
                if event["type"] == "response.completed" and response.get("metadata") == {"sentinel": "yes"}:
                    break
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code in EARNED_CLOSES, closed
    assert agent.failure is None


@EXAMPLES
@given(
    body=values | st.binary(max_size=300) | creates.map(lambda c: {k: v for k, v in c.items() if k != "type"})
)
def test_http_bodies(server: TetherServer, agent: Agent, body: Any) -> None:
    if isinstance(body, dict) and body.get("model") == SCRIPTED:
        body["stream"] = False  # keeps each example one request long
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    for path in ("/responses", "/responses/input_tokens", "/responses/compact"):
        reply = httpx.post(server.base_url + path, content=content, timeout=30,
                           headers={"content-type": "application/json"})  # fmt: skip
        assert reply.status_code < 500, (path, reply.status_code, reply.text[:500])
        assert "Traceback" not in reply.text
        assert "error" in reply.json() or reply.status_code == 200
    assert agent.failure is None


def test_invalid_utf8_and_deep_nesting_over_http(server: TetherServer) -> None:
    for content in (b'{"model": "\xff\xfe"}', b"[" * 100_000, b'{"input": ' * 10_000):
        reply = httpx.post(server.base_url + "/responses", content=content,
                           headers={"content-type": "application/json"})  # fmt: skip
        assert reply.status_code == 400 and reply.json()["error"]["type"] == "invalid_request_error"


def test_invalid_utf8_in_a_text_frame_closes_1007_and_harms_nothing(server: TetherServer) -> None:
    """Clients cannot send this through a WebSocket library, so the frame is built by hand."""
    sock = raw_upgrade(server)
    payload, mask = b'{"type": "\xff\xfe"}', os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)  # FIN + text, masked
    sock.settimeout(10)
    frame = sock.recv(4096)
    sock.close()
    assert frame[0] == 0x88 and int.from_bytes(frame[2:4], "big") == 1007  # close: invalid data
    with RawSocket(server) as ws:
        assert ws.turn(input="still fine", store=False)[-1]["type"] == "response.completed"


@EXAMPLES
@given(
    path=st.sampled_from(["/responses/{id}", "/responses/{id}/input_items", "/responses/{id}/cancel",
                          "/responses/{id}?stream=true", "/models", "/responses", "/nothing/{id}"]),
    response_id=st.sampled_from(["resp_missing", "", "..", "%00", "x" * 3000]) | st.text(max_size=30),
    query=st.dictionaries(
        st.sampled_from(["limit", "order", "after", "stream", "starting_after", "include[]", "x"]),
        st.text(max_size=20) | st.integers().map(str), max_size=4),
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"]),
)  # fmt: skip
def test_http_paths_and_queries(
    server: TetherServer, agent: Agent, path: str, response_id: str, query: dict[str, str], method: str
) -> None:
    url = server.base_url + path.replace("{id}", quote(response_id, safe=""))
    reply = httpx.request(method, url, params=query, timeout=30)
    assert reply.status_code < 500, (method, url, query, reply.status_code, reply.text[:500])
    assert "Traceback" not in reply.text
    if reply.status_code >= 400:  # (a trailing slash is redirected, 307, to the path without it)
        assert "error" in reply.json()
    assert agent.failure is None
