"""Several `tether serve` processes on one real PostgreSQL: any replica serves any stored state.

Two replicas, A and B, share a database; every test makes something on one and uses it from the
other, as a load balancer without sticky routing would send it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer
from tests.ws_client import RawSocket
from tether.bench.postgres import Postgres, postgres_server

KEYS = "alice sk-alice\nbob sk-bob\n"


@pytest.fixture(scope="module")
def replicas(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[TetherServer]]:
    folder = tmp_path_factory.mktemp("replicas")
    (folder / "keys").write_text(KEYS)
    url = postgres.new_database()
    servers = [
        TetherServer(folder / f"{name}.db", "--api-keys-file", str(folder / "keys"), store=url)
        for name in ("a", "b")
    ]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


def client(server: TetherServer, key: str = "sk-alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def stored_on(replica: openai.OpenAI, response_id: str, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            replica.responses.retrieve(response_id)
            return
        except openai.NotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def test_a_response_made_on_one_replica_is_served_whole_by_another(replicas: list[TetherServer]) -> None:
    a, b = (client(server) for server in replicas)
    made = a.responses.create(model=SCRIPTED, input="Remember: the code is 7.", max_output_tokens=4)
    assert b.responses.retrieve(made.id).output_text == made.output_text
    assert [item.id for item in b.responses.input_items.list(made.id).data] == [
        item.id for item in a.responses.input_items.list(made.id).data
    ]
    streamed = list(b.responses.retrieve(made.id, stream=True))
    assert streamed[-1].type == "response.completed" and streamed[-1].sequence_number == len(streamed) - 1


def test_a_chain_continues_on_any_replica_over_http_and_websocket(replicas: list[TetherServer]) -> None:
    a, b = (client(server) for server in replicas)
    first = a.responses.create(model=SCRIPTED, input="One.", max_output_tokens=4)
    second = b.responses.create(
        model=SCRIPTED, input="Two.", previous_response_id=first.id, max_output_tokens=4
    )
    assert second.status == "completed"
    with RawSocket(replicas[0], key="sk-alice") as ws:
        third = ws.turn(input="Three.", previous_response_id=second.id, store=True, max_output_tokens=4)[-1]
    assert third["type"] == "response.completed"
    assert third["response"]["usage"]["input_tokens"] > second.usage.input_tokens  # the whole chain
    # A stores a response a moment after its terminal event; other replicas do not see A's
    # responses in flight yet, so B can continue it once it is stored (README, "Several instances").
    stored_on(b, third["response"]["id"])
    fourth = b.responses.create(
        model=SCRIPTED, input="Four.", previous_response_id=third["response"]["id"], max_output_tokens=4
    )
    assert fourth.status == "completed"


def test_a_deletion_on_one_replica_is_seen_by_the_other(replicas: list[TetherServer]) -> None:
    a, b = (client(server) for server in replicas)
    made = a.responses.create(model=SCRIPTED, input="Short-lived.", max_output_tokens=2)
    assert b.responses.delete(made.id) is None
    with pytest.raises(openai.NotFoundError):
        a.responses.retrieve(made.id)
    with pytest.raises(openai.BadRequestError) as refused:
        a.responses.create(model=SCRIPTED, input="More.", previous_response_id=made.id)
    assert refused.value.code == "previous_response_not_found"


def test_tenants_stay_apart_across_replicas(replicas: list[TetherServer]) -> None:
    alices = client(replicas[0]).responses.create(model=SCRIPTED, input="Mine.", max_output_tokens=2)
    bob = client(replicas[1], "sk-bob")
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(alices.id)
    with pytest.raises(openai.BadRequestError) as refused:
        bob.responses.create(model=SCRIPTED, input="Yours?", previous_response_id=alices.id)
    assert refused.value.code == "previous_response_not_found"


def test_a_store_url_tether_cannot_serve_is_a_clear_startup_error(tmp_path: Path) -> None:
    """Not a SQLite file named after the URL."""
    server = TetherServer(tmp_path / "x.db", store="mysql://db.internal/tether")
    with pytest.raises(RuntimeError):
        server.start()
    assert "expected a SQLite path, sqlite:///PATH or postgresql://" in server.log_path.read_text()
    assert not any(tmp_path.glob("mysql*"))


def test_readiness_follows_the_store(tmp_path: Path) -> None:
    """`/readyz` is 200 while PostgreSQL answers, 503 naming the store once it is gone, and open
    without a key, like `/healthz`."""
    with postgres_server() as own:
        server = TetherServer(tmp_path / "r.db", api_key="sk-ready", store=own.new_database()).start()
        try:
            ready = httpx.get(server.base_url.removesuffix("/v1") + "/readyz", timeout=10)
            assert ready.status_code == 200
            assert ready.json() == {"status": "ready", "checks": {"store": "ok", "backend": "ok"}}
            own.process.send_signal(signal.SIGINT)
            own.process.wait(timeout=30)
            gone = httpx.get(server.base_url.removesuffix("/v1") + "/readyz", timeout=10)
            assert gone.status_code == 503
            assert gone.json() == {"status": "not_ready", "checks": {"store": "unavailable", "backend": "ok"}}
        finally:
            server.stop()


def test_a_chain_held_by_one_replica_breaks_when_another_deletes_a_link(
    replicas: list[TetherServer],
) -> None:
    """A holds the parsed history of the chain it made; a link deleted on B still breaks it."""
    a, b = (client(server) for server in replicas)
    root = a.responses.create(model=SCRIPTED, input="Root.", max_output_tokens=2)
    tip = a.responses.create(model=SCRIPTED, input="Tip.", previous_response_id=root.id, max_output_tokens=2)
    assert a.responses.create(model=SCRIPTED, input="Ok?", previous_response_id=tip.id).status == "completed"
    b.responses.delete(root.id)
    with pytest.raises(openai.BadRequestError) as refused:
        a.responses.create(model=SCRIPTED, input="Still?", previous_response_id=tip.id)
    assert refused.value.code == "previous_response_not_found"
