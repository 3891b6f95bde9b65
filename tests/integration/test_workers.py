"""`tether serve --workers N`: N real processes on one port under a supervisor, sharing one real
PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import openai
import psutil
import pytest

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer
from tether.bench.postgres import Postgres


def serve_exits(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tether", "serve", "--port", "0", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_workers_need_postgresql_and_a_model_served_elsewhere(postgres: Postgres, tmp_path: Path) -> None:
    on_sqlite = serve_exits("--workers", "2", "--model", "scripted", "--db", str(tmp_path / "w.db"))
    assert on_sqlite.returncode == 2 and "--workers needs a PostgreSQL store" in on_sqlite.stderr
    local = serve_exits("--workers", "2", "--db", postgres.new_database())
    assert local.returncode == 2 and "does not apply to the embedded local model" in local.stderr


def workers(supervisor: psutil.Process) -> list[psutil.Process]:
    """The supervisor's workers (not multiprocessing's resource tracker)."""
    return [child for child in supervisor.children() if "spawn_main" in " ".join(child.cmdline())]


def owner_pid(url: str, response_id: str) -> int:
    """The pid of the process that runs a response, from its row's owner (`host:pid:token`)."""

    async def read() -> str:
        connection = await asyncpg.connect(url)
        try:
            return str(await connection.fetchval("SELECT owner FROM responses WHERE id = $1", response_id))
        finally:
            await connection.close()

    return int(asyncio.run(read()).split(":")[1])


def test_two_workers_share_the_port_and_one_killed_is_replaced(postgres: Postgres, tmp_path: Path) -> None:
    """Both workers take connections; SIGKILL one mid-background-response: the supervisor starts
    it again, the port keeps answering, and the response ends `failed` (an orphan); SIGTERM then
    stops every process with exit 0."""
    url = postgres.new_database()
    flags = ("--workers", "2", "--orphan-after-s", "2", "--scripted-decode-us", "2000")
    server = TetherServer(tmp_path / "w.db", *flags, store=url).start()
    assert server.process is not None
    supervisor = psutil.Process(server.process.pid)
    try:
        while len(workers(supervisor)) < 2:
            time.sleep(0.1)
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=3)

        def one(n: int) -> str:
            """On a connection of its own, for 100 ms: while one worker is busy the other accepts."""
            with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=3) as own:
                return own.responses.create(model=SCRIPTED, input=f"n{n}", max_output_tokens=50).id

        with ThreadPoolExecutor(32) as pool:
            made = list(pool.map(one, range(64)))
        owners = {owner_pid(url, response_id) for response_id in made}
        assert owners == {child.pid for child in workers(supervisor)}  # both took work

        long = client.responses.create(model=SCRIPTED, input="Long.", background=True, max_output_tokens=5000)
        victim = owner_pid(url, long.id)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while client.responses.retrieve(long.id).status in ("queued", "in_progress"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        ended = client.responses.retrieve(long.id)
        assert ended.status == "failed" and ended.error is not None and ended.error.code == "server_error"
        while len(workers(supervisor)) < 2:  # started again
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert victim not in {child.pid for child in workers(supervisor)}
        assert client.responses.create(model=SCRIPTED, input="Still here?").status == "completed"
    finally:
        children = supervisor.children()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
        assert psutil.wait_procs(children, timeout=30)[1] == []  # none left alive
        server.process = None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_no_worker_outlives_its_supervisor(postgres: Postgres, tmp_path: Path, signum: int) -> None:
    server = TetherServer(tmp_path / "w.db", "--workers", "2", store=postgres.new_database()).start()
    assert server.process is not None
    supervisor = psutil.Process(server.process.pid)
    while len(workers(supervisor)) < 2:
        time.sleep(0.1)
    children = supervisor.children()
    server.process.send_signal(signum)
    server.process.wait(timeout=60)
    server.process = None
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == []
