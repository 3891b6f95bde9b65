"""SIGKILL while responses are being written: the SQLite file reopens cleanly, and every response
in it is whole: terminal, with its items and its complete event log, and chainable."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import openai

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer

WRITERS = 4


def test_a_killed_server_leaves_only_whole_responses(tmp_path: Path) -> None:
    server = TetherServer(tmp_path / "crash.db").start()
    stop = threading.Event()
    made: list[str] = []

    def write_forever() -> None:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        previous = None
        while not stop.is_set():
            try:
                response = client.responses.create(
                    model=SCRIPTED, input="x" * 2000, previous_response_id=previous, max_output_tokens=64
                )
            except openai.APIError:
                return  # the server is gone
            made.append(response.id)
            previous = response.id

    writers = [threading.Thread(target=write_forever) for _ in range(WRITERS)]
    for writer in writers:
        writer.start()
    try:
        while len(made) < 40:
            time.sleep(0.01)
        server.kill()  # in the middle of a stream of transactions
    finally:
        stop.set()
        for writer in writers:
            writer.join(timeout=30)

    db = sqlite3.connect(tmp_path / "crash.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = db.execute("SELECT id, status FROM responses").fetchall()
    db.close()
    assert len(rows) >= 40 and {status for _, status in rows} <= {"completed", "incomplete"}

    server.start()
    try:
        client = server.client()
        for response_id, _ in rows:
            events = list(client.responses.retrieve(response_id, stream=True))
            assert [e.sequence_number for e in events] == list(range(len(events)))
            assert events[0].type == "response.created" and events[-1].type == "response.completed"
            assert client.responses.input_items.list(response_id).data
        last = rows[-1][0]
        assert (
            client.responses.create(model=SCRIPTED, input="on", previous_response_id=last).status
            == "completed"
        )
    finally:
        server.stop()
