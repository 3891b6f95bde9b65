"""SIGKILL while responses are being written: the SQLite file reopens cleanly, every response in
it is whole (with its items and its event log), and the ones that were running when the process
died end `failed` when the next process opens the file."""

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
    # Each response takes a moment (2 ms a token), so that the kill finds some running.
    server = TetherServer(tmp_path / "crash.db", "--scripted-decode-us", "2000").start()
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
        # One that surely runs when the kill comes: 10 s long.
        server.client().responses.create(
            model=SCRIPTED, input="long", background=True, max_output_tokens=5000
        )
        server.kill()  # in the middle of a stream of transactions
    finally:
        stop.set()
        for writer in writers:
            writer.join(timeout=30)

    db = sqlite3.connect(tmp_path / "crash.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = db.execute("SELECT id, status FROM responses").fetchall()
    db.close()
    assert len(rows) >= 40 and {status for _, status in rows} <= {"completed", "in_progress", "queued"}
    running = {response_id for response_id, status in rows if status != "completed"}
    assert running, "the kill found nothing running: it proves nothing about orphans"

    server.start()
    try:
        client = server.client()
        for response_id, _ in rows:
            events = list(client.responses.retrieve(response_id, stream=True))
            assert [e.sequence_number for e in events] == list(range(len(events)))
            ending = "response.failed" if response_id in running else "response.completed"
            assert events[0].type == "response.created" and events[-1].type == ending
            assert client.responses.retrieve(response_id).status == ending.removeprefix("response.")
            assert client.responses.input_items.list(response_id).data
        last = next(response_id for response_id, _ in reversed(rows) if response_id not in running)
        assert (
            client.responses.create(model=SCRIPTED, input="on", previous_response_id=last).status
            == "completed"
        )
    finally:
        server.stop()
