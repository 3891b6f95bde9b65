"""WebSocket mode through the official SDK's `responses.connect()`, sync and async."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import SCRIPTED
from tests.integration.test_http_create import WEATHER_TOOL
from tests.server_process import TetherServer

TERMINAL = {"response.completed", "response.failed", "response.incomplete"}


def run_turn(conn: Any, **params: Any) -> Any:
    """One create, then events until its terminal event; an `error` event is returned as is."""
    conn.response.create(model=SCRIPTED, **params)
    for event in conn:
        if event.type == "error":
            return event
        if event.type in TERMINAL:
            return event.response
    raise AssertionError("the socket closed before a terminal event")


def test_sync_connect_runs_a_turn(scripted_server: TetherServer) -> None:
    with scripted_server.client().responses.connect() as conn:
        response = run_turn(conn, input="Hello over a socket.")
    assert response.status == "completed" and response.output_text


def test_async_connect_runs_a_turn(scripted_server: TetherServer) -> None:
    async def main() -> Any:
        async with scripted_server.async_client().responses.connect() as conn:
            await conn.response.create(model=SCRIPTED, input="Hello, async.", store=False)
            async for event in conn:
                if event.type in TERMINAL:
                    return event.response
        return None

    response = asyncio.run(main())
    assert response is not None and response.status == "completed"


def test_a_25_turn_tool_loop_sends_only_new_outputs(scripted_server: TetherServer) -> None:
    """The headline pattern: one socket, store:false, previous_response_id + the new output."""
    with scripted_server.client().responses.connect() as conn:
        response = run_turn(conn, input="Check the weather 25 times.", tools=[WEATHER_TOOL], store=False,
                            tool_choice="required")  # fmt: skip
        for turn in range(25):
            call = response.output[0]
            assert call.type == "function_call", (turn, response.output)
            json.loads(call.arguments)
            output = [{"type": "function_call_output", "call_id": call.call_id, "output": f"sunny {turn}"}]
            previous = response
            response = run_turn(
                conn, previous_response_id=previous.id, input=output, tools=[WEATHER_TOOL], store=False,
                tool_choice="required" if turn < 24 else "auto",
            )  # fmt: skip
            usage = response.usage
            assert usage.input_tokens > previous.usage.input_tokens
            # Everything the parent saw and said was cached; only the new output is prefilled.
            cached = usage.input_tokens_details.cached_tokens
            assert previous.usage.input_tokens + previous.usage.output_tokens <= cached < usage.input_tokens
    assert response.output[0].type == "message" and response.output_text


def test_scripted_rules_over_websocket(scripted_server: TetherServer) -> None:
    """The scripted model decides the same way on either transport (README "Models")."""
    with scripted_server.client().responses.connect() as conn:
        assert run_turn(conn, input="hi").output[0].type == "message"
        assert (
            run_turn(conn, input="hi", tools=[WEATHER_TOOL], tool_choice="none").output[0].type == "message"
        )
        named = run_turn(conn, input="hi", tools=[WEATHER_TOOL, {**WEATHER_TOOL, "name": "other"}],
                         tool_choice={"type": "function", "name": "other"})  # fmt: skip
        assert named.output[0].name == "other"
        auto = run_turn(conn, input="Weather?", tools=[WEATHER_TOOL], store=False)
        assert auto.output[0].type == "function_call"
        report = run_turn(
            conn, previous_response_id=auto.id, tools=[WEATHER_TOOL], store=False,
            input=[{"type": "function_call_output", "call_id": auto.output[0].call_id, "output": "sun"}],
        )  # fmt: skip
        assert report.output[0].type == "message"
        exact = run_turn(conn, input="Exactly nine.", max_output_tokens=9)
        assert exact.status == "completed" and exact.usage.output_tokens == 9


def test_reconnect_after_a_restart_then_resend_the_full_context(tmp_path: Path) -> None:
    """§8.9: the server restarts (1012); the SDK reconnects; the store:false parent is gone
    (previous_response_not_found) and a full-context resend works.

    The SDK reconnects while it is receiving, so like a real app this test keeps a reader loop
    running on its own thread; sends made while it reconnects are queued and flushed."""
    server = TetherServer(tmp_path / "reconnect.db").start()
    close_codes: list[int] = []
    events: queue.Queue[Any] = queue.Queue()

    def read_forever(conn: Any) -> None:
        try:
            for event in conn:
                events.put(event)
        except Exception as exc:
            events.put(exc)

    def turn(conn: Any, **params: Any) -> Any:
        conn.response.create(model=SCRIPTED, **params)
        while True:
            event = events.get(timeout=30)
            assert not isinstance(event, Exception), event
            if event.type == "error":
                return event
            if event.type in TERMINAL:
                return event.response

    try:
        manager = server.client().responses.connect(
            on_reconnecting=lambda event: close_codes.append(event.close_code), initial_delay=0.2
        )
        with manager as conn:
            threading.Thread(target=read_forever, args=(conn,), daemon=True).start()
            first = turn(conn, input="Pick a colour.", store=False)
            server.stop()
            server.start()
            deadline = time.monotonic() + 30
            while not close_codes:  # the reader saw the close and is reconnecting
                assert time.monotonic() < deadline
                time.sleep(0.05)
            lost = turn(conn, input="A shade of it.", store=False, previous_response_id=first.id)
            assert lost.type == "error" and lost.error.code == "previous_response_not_found"
            history = [{"role": "user", "content": "Pick a colour."},
                       *[item.model_dump(exclude_none=True, warnings=False) for item in first.output],
                       {"role": "user", "content": "A shade of it."}]  # fmt: skip
            again = turn(conn, input=history, store=False)
        assert again.status == "completed"
        assert close_codes[0] == 1012
    finally:
        server.stop()
