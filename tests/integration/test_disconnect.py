"""D9 over HTTP: a client that goes away mid-response cancels it; `store: true` keeps it."""

from __future__ import annotations

import time

import openai

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer


def _wait_for_terminal_status(client: openai.OpenAI, response_id: str) -> str:
    deadline = time.monotonic() + 30
    while (status := client.responses.retrieve(response_id).status) in ("queued", "in_progress"):
        assert time.monotonic() < deadline, "the response never ended"
        time.sleep(0.05)
    return status or ""


def test_closing_an_sse_stream_interrupts_and_stores_the_response(slow_server: TetherServer) -> None:
    client = slow_server.client()
    stream = client.responses.create(
        model=SCRIPTED, input="Go on and on.", stream=True, max_output_tokens=1000
    )
    response_id = ""
    for event in stream:
        if event.type == "response.created":
            response_id = event.response.id
        if event.type == "response.output_text.delta":
            break
    stream.close()
    assert _wait_for_terminal_status(client, response_id) == "incomplete"
    stored = client.responses.retrieve(response_id)
    assert stored.incomplete_details is not None
    assert stored.incomplete_details.reason == "interrupted"
    # Generation stopped well before the 1000 tokens it was asked for (20 s at 20 ms a token).
    assert len(stored.output[0].content[0].text) < 1000 * 4  # type: ignore[union-attr]
