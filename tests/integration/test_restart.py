"""Stored responses survive a restart, and a chain continues across it (SQLite store)."""

from __future__ import annotations

from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosedError

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer


def test_a_chain_continues_after_the_server_restarts(tmp_path: Path) -> None:
    server = TetherServer(tmp_path / "restart.db").start()
    try:
        first = server.client().responses.create(model=SCRIPTED, input="Before the restart.")
        server.stop()
        server.start()
        client = server.client()
        again = client.responses.retrieve(first.id)
        assert again.output_text == first.output_text and again.status == "completed"
        follow = client.responses.create(
            model=SCRIPTED, input="After the restart.", previous_response_id=first.id
        )
        assert follow.usage is not None and first.usage is not None
        assert follow.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
        items = client.responses.input_items.list(first.id).data
        assert items[0].content[0].text == "Before the restart."  # type: ignore[union-attr]
    finally:
        server.stop()


def test_a_response_running_at_shutdown_is_stored_as_interrupted(tmp_path: Path) -> None:
    """D9 at shutdown: the running response ends `incomplete` / `interrupted` and is kept."""
    server = TetherServer(
        tmp_path / "shutdown.db", "--scripted-decode-us", "50000", "--shutdown-grace-s", "0.5"
    ).start()
    try:
        client = server.client()
        started = client.responses.create(
            model=SCRIPTED, input="Long.", background=True, max_output_tokens=1000
        )
        for event in client.responses.retrieve(started.id, stream=True):
            if event.type == "response.output_text.delta":
                break
        server.stop()
        server.start()
        stored = server.client().responses.retrieve(started.id)
        assert stored.status == "incomplete"
        assert stored.incomplete_details is not None
        assert stored.incomplete_details.reason == "interrupted"
        assert stored.output[0].status == "incomplete"
    finally:
        server.stop()


def test_openai_python_after_an_idle_restart_raises_and_recovers_as_the_readme_says(tmp_path: Path) -> None:
    """README "Client notes": `connect(on_reconnecting=...)` reconnects only while the application
    reads. A restart between turns (close 1012) surfaces on the next `create()` as websockets'
    `ConnectionClosedError`; a new connection and the same turn, chained to the stored response,
    carry on."""
    server = TetherServer(tmp_path / "idle.db").start()
    reconnects: list[object] = []
    try:
        client = server.client()
        with client.responses.connect(on_reconnecting=reconnects.append) as conn:
            conn.response.create(model=SCRIPTED, input="Before the restart.")
            first = next(e.response for e in conn if e.type == "response.completed")
            server.stop()
            server.start()
            with pytest.raises(ConnectionClosedError) as closed:
                conn.response.create(model=SCRIPTED, input="After.", previous_response_id=first.id)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        assert reconnects == []  # nothing was reading when the socket closed
        with client.responses.connect() as conn:
            conn.response.create(model=SCRIPTED, input="After.", previous_response_id=first.id)
            follow = next(e.response for e in conn if e.type == "response.completed")
        assert follow.previous_response_id == first.id
    finally:
        server.stop()
