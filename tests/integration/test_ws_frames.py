"""WebSocket mode with raw `websockets`: the handshake, malformed traffic and lanes (§3, §4.1.2, D4, D6)."""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer
from tests.ws_client import TERMINAL, RawSocket, assert_error_shape


def assert_error(event: dict[str, Any], code: str, param: str | None) -> None:
    assert_error_shape(event)
    assert event["status"] == 400
    assert event["error"]["code"] == code and event["error"]["param"] == param


@pytest.mark.parametrize(
    ("frame", "code", "param"),
    [
        ("{oops", "invalid_json", None),
        ('"a string"', "invalid_json", None),
        ('{"input": "no type"}', "invalid_request_error", "type"),
        ('{"type": "response.cancel"}', "unknown_event_type", "type"),
        (b"\x00\x01binary", "invalid_json", None),
        (
            '{"type": "response.create", "model": "tether-scripted", "background": true}',
            "invalid_request_error",
            "background",
        ),
        (
            '{"type": "response.create", "model": "tether-scripted", "input": 5}',
            "invalid_request_error",
            "input",
        ),
        ('{"type": "response.create", "model": "nope"}', "invalid_request_error", "model"),
        (
            '{"type": "response.create", "model": "tether-scripted", "previous_response_id": "resp_x"}',
            "previous_response_not_found",
            "previous_response_id",
        ),
    ],
)
def test_a_bad_frame_gets_an_error_event_and_the_socket_stays_usable(
    scripted_server: TetherServer, frame: str | bytes, code: str, param: str | None
) -> None:
    """D6, D3, D1: errors as events with `status`; the next create works on the same socket."""
    with RawSocket(scripted_server) as ws:
        ws.send(frame)
        assert_error(ws.recv(), code, param)
        events = ws.turn(input="still there?")
        assert events[-1]["type"] == "response.completed"


def test_the_upgrade_answers_the_headers_codex_reads(limited_server: TetherServer) -> None:
    """The model serving the socket, that usage covers reasoning, and the inbound message limit
    (65536 on this server), so Codex can size its frames."""
    with RawSocket(limited_server) as ws:
        assert ws.ws.response is not None
        headers = ws.ws.response.headers
    assert headers["openai-model"] == SCRIPTED
    assert headers["x-reasoning-included"] == "true"
    assert headers["x-codex-websocket-max-message-bytes"] == "65536"


def test_stream_true_and_unknown_fields_are_ignored(scripted_server: TetherServer) -> None:
    """D3: what Codex and the agents SDKs send."""
    with RawSocket(scripted_server) as ws:
        events = ws.turn(
            input="hi", stream=True, client_metadata={"x": "y"},
            tools=[{"type": "namespace", "name": "multi_agent_v1", "tools": []},
                   {"type": "web_search", "external_web_access": False}],
        )  # fmt: skip
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["tools"] == []


def test_events_of_a_named_lane_all_carry_its_stream_id(scripted_server: TetherServer) -> None:
    with RawSocket(scripted_server) as ws:
        named = ws.turn(input="hi", stream_id="main")
        default = ws.turn(input="hi")
    assert all(e["stream_id"] == "main" for e in named)
    assert all("stream_id" not in e for e in default)
    assert [e["sequence_number"] for e in named] == list(range(len(named)))


def test_lane_errors_echo_the_stream_id_unless_it_is_invalid(scripted_server: TetherServer) -> None:
    with RawSocket(scripted_server) as ws:
        ws.create(stream_id="lane.1", previous_response_id="resp_gone")
        error = ws.recv()
        assert_error(error, "previous_response_not_found", "previous_response_id")
        assert error["stream_id"] == "lane.1"
        ws.create(stream_id="bad lane!")
        error = ws.recv()
        assert_error(error, "invalid_stream_id", "stream_id")
        assert "stream_id" not in error


def test_error_events_are_numbered_per_connection(scripted_server: TetherServer) -> None:
    """Errors belong to no response, so they take the connection's own counter: from phase 1
    (the session) and phase 2 (the chain) alike, across lanes, and from 0 on a new socket."""
    with RawSocket(scripted_server) as ws:
        ws.send("{oops")
        first = ws.recv()
        ws.create(stream_id="a", previous_response_id="resp_gone")
        second = ws.recv()
        assert ws.turn(input="fine")[-1]["type"] == "response.completed"
        third = ws.turn(model="nope")[-1]
    assert [e["sequence_number"] for e in (first, second, third)] == [0, 1, 2]
    with RawSocket(scripted_server) as ws:
        ws.send("{oops")
        assert ws.recv()["sequence_number"] == 0


def test_the_fifth_lane_is_refused_when_four_are_allowed(limited_server: TetherServer) -> None:
    """D4 with the lane cap configured to 4 (the default is 32, tested in the unit tests)."""
    with RawSocket(limited_server) as ws:
        for i in range(4):
            assert (
                ws.turn(stream_id=f"l{i}", input="x", max_output_tokens=1)[-1]["type"] == "response.completed"
            )
        ws.create(stream_id="l4", input="x")
        error = ws.recv()
        assert_error(error, "websocket_stream_limit_reached", "stream_id")
        assert error["stream_id"] == "l4"
        assert ws.turn(stream_id="l0", input="x", max_output_tokens=1)[-1]["type"] == "response.completed"


def test_33_named_lanes_on_the_default_server(scripted_server: TetherServer) -> None:
    with RawSocket(scripted_server) as ws:
        for i in range(32):
            ws.create(stream_id=f"lane-{i}", input="x", max_output_tokens=1)
        ws.create(stream_id="lane-32", input="x")
        finished, errors = 0, []
        while finished < 32 or not errors:
            event = ws.recv()
            finished += event["type"] == "response.completed"
            if event["type"] == "error":
                errors.append(event)
    assert [e["error"]["code"] for e in errors] == ["websocket_stream_limit_reached"]


def test_two_lanes_interleave(slow_server: TetherServer) -> None:
    with RawSocket(slow_server) as ws:
        ws.create(stream_id="a", input="one", max_output_tokens=15)
        ws.create(stream_id="b", input="two", max_output_tokens=15)
        order, done = [], set()
        while len(done) < 2:
            event = ws.recv()
            if event["type"] == "response.output_text.delta":
                order.append(event["stream_id"])
            if event["type"] in TERMINAL:
                done.add(event["stream_id"])
    switches = sum(1 for x, y in itertools.pairwise(order) if x != y)
    assert order.count("a") == order.count("b") == 15
    assert switches >= 5  # both lanes stream at the same time, not one after the other


def test_a_busy_lane_queues_creates_in_order(slow_server: TetherServer) -> None:
    """D4: never rejected, never overlapping, FIFO."""
    with RawSocket(slow_server) as ws:
        for word in ("first", "second", "third"):
            ws.create(input=word, max_output_tokens=3, metadata={"word": word})
        finished, running = [], 0
        while len(finished) < 3:
            event = ws.recv()
            if event["type"] == "response.created":
                assert running == 0, "a create started while the lane was busy"
                running += 1
            if event["type"] in TERMINAL:
                running -= 1
                finished.append(event["response"]["metadata"]["word"])
    assert finished == ["first", "second", "third"]


def test_17_creates_run_16_at_a_time_and_all_complete(slow_server: TetherServer) -> None:
    with RawSocket(slow_server) as ws:
        for i in range(17):
            ws.create(stream_id=f"c{i}", input="x", max_output_tokens=10)
        running, most, completed = 0, 0, 0
        while completed < 17:
            event = ws.recv()
            if event["type"] == "response.created":
                running += 1
                most = max(most, running)
            if event["type"] in TERMINAL:
                running -= 1
                completed += 1
    assert most == 16


def test_an_oversized_message_closes_with_1009(limited_server: TetherServer) -> None:
    with RawSocket(limited_server) as ws:
        ws.send(json.dumps({"type": "response.create", "model": SCRIPTED, "input": "x" * 70_000}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_a_large_message_under_the_default_limit_is_accepted(scripted_server: TetherServer) -> None:
    """§3.4: at least 64 MiB by default; Codex sends base64 images."""
    with RawSocket(scripted_server) as ws:
        events = ws.turn(input="y" * (20 * 1024 * 1024), max_output_tokens=1)
    assert events[-1]["type"] == "response.completed"


def test_compression_is_negotiated_when_offered(scripted_server: TetherServer) -> None:
    with RawSocket(scripted_server, compression="deflate") as ws:
        assert ws.ws.response.headers.get("sec-websocket-extensions", "").startswith("permessage-deflate")
        assert ws.turn(input="zip")[-1]["type"] == "response.completed"
    with RawSocket(scripted_server, compression=None) as ws:
        assert "sec-websocket-extensions" not in ws.ws.response.headers
        assert ws.turn(input="plain")[-1]["type"] == "response.completed"


def test_the_upgrade_is_refused_without_the_api_key(auth_server: TetherServer) -> None:
    """§3.3: a normal HTTP 401 with the spec's body, before any 101."""
    url = auth_server.base_url.replace("http://", "ws://") + "/responses"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers={"Authorization": "Bearer sk-wrong"})
    response = refused.value.response
    assert response.status_code == 401
    assert json.loads(response.body)["error"]["code"] == "invalid_api_key"
    with RawSocket(auth_server) as ws:
        assert ws.turn(input="authorized")[-1]["type"] == "response.completed"


def test_websocket_mode_can_be_switched_off(tmp_path: object) -> None:
    server = TetherServer(tmp_path / "off.db", "--no-websocket").start()  # type: ignore[operator]
    try:
        url = server.base_url.replace("http://", "ws://") + "/responses"
        with pytest.raises(InvalidStatus) as refused:
            connect(url)
        assert refused.value.response.status_code == 426
        assert (
            httpx.post(server.base_url + "/responses", json={"model": SCRIPTED, "input": "x"}).status_code
            == 200
        )
    finally:
        server.stop()


def test_creates_from_two_threads_on_two_sockets_do_not_mix(scripted_server: TetherServer) -> None:
    results: dict[str, list[dict[str, object]]] = {}

    def run(name: str) -> None:
        with RawSocket(scripted_server) as ws:
            results[name] = [ws.turn(input=name, metadata={"who": name}) for _ in range(5)][-1]

    threads = [threading.Thread(target=run, args=(n,)) for n in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results["one"][-1]["response"]["metadata"] == {"who": "one"}  # type: ignore[index]
    assert results["two"][-1]["response"]["metadata"] == {"who": "two"}  # type: ignore[index]
