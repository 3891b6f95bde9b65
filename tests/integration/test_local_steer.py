"""Steering on the local engine (spec §8.6): the steered answer stops at the next token, its KV is
kept, and the successor prefills only the steering text. Token counts from `usage`, never times."""

from __future__ import annotations

import pytest

from tests.conftest import LOCAL
from tests.server_process import TetherServer
from tests.ws_client import RawSocket

pytestmark = pytest.mark.local_model

# Long enough to steer while it streams: SmolLM2 keeps counting well past 64 tokens.
COUNTING = {
    "model": LOCAL,
    "input": "Count from 1 to 500, one number per line.",
    "temperature": 0,
    "store": False,
}


def test_the_successor_prefills_only_the_steering_text(local_server: TetherServer) -> None:
    with RawSocket(local_server) as ws:
        ws.create(max_output_tokens=64, **COUNTING)
        target = ws.steered(8, "Stop counting and say hello.")[-1]["response"]
        successor = ws.until_done()[-1]["response"]
    assert target["status"] == "incomplete" and target["incomplete_details"] == {"reason": "steered"}
    produced = target["usage"]["output_tokens"]
    assert 8 <= produced < 64
    assert successor["previous_response_id"] == target["id"]
    assert successor["status"] in ("completed", "incomplete") and successor["output"]
    usage = successor["usage"]
    cached = usage["input_tokens_details"]["cached_tokens"]
    # Everything the steered response had — its prompt and each token it produced — was in the
    # KV already; only the end of its turn and the steering message were prefilled.
    assert cached == target["usage"]["input_tokens"] + produced, (target["usage"], usage)
    assert usage["input_tokens"] - cached < 24, usage


def test_a_successor_that_cannot_fit_fails_its_steer_and_the_socket_carries_on(
    local_server: TetherServer,
) -> None:
    """It inherits the steered response's settings: with room for 7000 output tokens, a long
    steer leaves its context no room (§7.6 `successor_creation_failed`)."""
    with RawSocket(local_server) as ws:
        ws.create(max_output_tokens=7000, **COUNTING)
        events = ws.steered(4, "word " * 1500)
        failed = ws.recv()
        after = ws.turn(model=LOCAL, input="Say hi.", max_output_tokens=4, store=False)
    target = events[-1]
    assert target["response"]["incomplete_details"] == {"reason": "steered"}
    accepted = next(event for event in events if event["type"] == "response.steer.accepted")
    assert failed["type"] == "response.steer.failed"
    assert failed["error"]["code"] == "successor_creation_failed" and "context" in failed["error"]["message"]
    assert failed["steer"]["id"] == accepted["steer"]["id"]
    assert failed["sequence_number"] == target["sequence_number"] + 1
    assert after[-1]["type"] in ("response.completed", "response.incomplete")
