"""`response.steer` on a real socket: the official SDK's sender and malformed steers (§4.3, §7.6).

Until a backend can steer, every valid steer is answered `steering_not_supported`; the response it
targets runs on untouched and the connection stays usable."""

from __future__ import annotations

from typing import Any

from openai.types.responses import ResponseSteerFailedEvent

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer
from tests.ws_client import RawSocket

TERMINAL = {"response.completed", "response.failed", "response.incomplete"}


def test_the_sdk_s_steer_mid_stream_is_refused_and_the_response_runs_on(slow_server: TetherServer) -> None:
    with slow_server.client().responses.connect() as conn:
        conn.response.create(model=SCRIPTED, input="Tell me a long story.", store=False)
        failed: list[ResponseSteerFailedEvent] = []
        final: Any = None
        for event in conn:
            if event.type == "response.created":
                conn.response.steer(previous_response_id=event.response.id, input="Keep it to two lines.")
            elif event.type == "response.steer.failed":
                failed.append(event)
            elif event.type in TERMINAL:
                final = event.response
                break
        assert final is not None and final.status == "completed"
        [refused] = failed
        assert refused.error.code == "steering_not_supported"
        assert (
            refused.steer.previous_response_id == final.id and refused.steer.input == "Keep it to two lines."
        )
        conn.response.create(model=SCRIPTED, input="Again.", previous_response_id=final.id, store=False)
        assert next(event for event in conn if event.type in TERMINAL).response.status == "completed"


def test_a_malformed_steer_is_invalid_input_with_its_input_returned(scripted_server: TetherServer) -> None:
    wrong = [{"role": "assistant", "content": "I am not the user."}]
    with RawSocket(scripted_server) as ws:
        ws.send({"type": "response.steer", "previous_response_id": "resp_x", "input": wrong})
        refused = ws.recv()
        ws.send({"type": "response.steer", "previous_response_id": "resp_x", "input": "x", "stream_id": "a"})
        with_lane = ws.recv()
        events = ws.turn(input="Still here?")
    assert refused["type"] == with_lane["type"] == "response.steer.failed"
    assert refused["error"] == {
        "type": "invalid_request_error",
        "code": "invalid_input",
        "message": refused["error"]["message"],
    }
    assert refused["steer"] == {"previous_response_id": "resp_x", "input": wrong}
    assert "stream_id" in with_lane["error"]["message"] and "stream_id" not in with_lane
    assert [refused["sequence_number"], with_lane["sequence_number"]] == [0, 1]
    assert events[-1]["type"] == "response.completed"
