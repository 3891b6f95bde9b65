"""The deployment recipe (`deploy/`): a real nginx with `deploy/nginx.conf.template` in front of
two real Tether replicas on one real PostgreSQL. What a team gets from it: HTTP and WebSocket
through one address, chains that continue wherever the balancer sends the next turn, and a
replica that dies without its clients noticing more than the requests it was holding."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from websockets.sync.client import connect

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer
from tether.bench import servers
from tether.bench.postgres import Postgres

TEMPLATE = Path(__file__).parents[2] / "deploy" / "nginx.conf.template"


@pytest.fixture
def cluster(postgres: Postgres, tmp_path: Path) -> Iterator[tuple[servers.ServerProcess, list[TetherServer]]]:
    url = postgres.new_database()
    replicas = [TetherServer(tmp_path / f"r{n}.db", "--orphan-after-s", "2", store=url) for n in range(2)]
    balancer = servers.nginx(TEMPLATE, [r.port for r in replicas], tmp_path / "lb")
    try:
        for process in (*replicas, balancer):
            process.start()
        yield balancer, replicas
    finally:
        for process in (balancer, *replicas):
            process.stop()


def ws_turn(port: int, **body: object) -> dict[str, object]:
    with connect(f"ws://127.0.0.1:{port}/v1/responses") as ws:
        ws.send(json.dumps({"type": "response.create", "model": SCRIPTED, **body}))
        while True:
            event = json.loads(ws.recv())
            if event["type"] in ("response.completed", "error"):
                return event  # type: ignore[no-any-return]


def test_http_and_websocket_chains_go_through_the_balancer(
    cluster: tuple[servers.ServerProcess, list[TetherServer]],
) -> None:
    balancer, _ = cluster
    client = openai.OpenAI(base_url=balancer.base_url, api_key="x", max_retries=0)
    previous = None
    for turn in range(6):  # least_conn sends them to either replica
        previous = client.responses.create(
            model=SCRIPTED, input=f"Turn {turn}.", previous_response_id=previous, max_output_tokens=4
        ).id
    over_ws = ws_turn(balancer.port, input="And over a socket.", previous_response_id=previous, store=True)
    assert over_ws["type"] == "response.completed"
    with client.responses.create(model=SCRIPTED, input="Streamed.", stream=True) as stream:
        assert [event.type for event in stream][-1] == "response.completed"


def test_a_replica_killed_behind_the_balancer_costs_no_new_request(
    cluster: tuple[servers.ServerProcess, list[TetherServer]],
) -> None:
    balancer, replicas = cluster
    client = openai.OpenAI(base_url=balancer.base_url, api_key="x", max_retries=0)
    made = client.responses.create(model=SCRIPTED, input="Before.", max_output_tokens=4)
    replicas[0].kill()
    for turn in range(10):  # nginx tries the other replica when one refuses the connection
        follow = client.responses.create(model=SCRIPTED, input=f"After {turn}.", previous_response_id=made.id)
        assert follow.status == "completed"
    assert ws_turn(balancer.port, input="Still there?")["type"] == "response.completed"
