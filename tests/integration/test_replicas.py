"""Several `tether serve` processes on one real PostgreSQL: any replica serves any stored state.

Two replicas, A and B, share a database; every test makes something on one and uses it from the
other, as a load balancer without sticky routing would send it: finished responses, responses
still running on the other (streamed live, cancelled), and the responses of a replica killed
mid-way.
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
SLOW = ("--scripted-decode-us", "2000")  # 2 ms a token: a long response runs for seconds
ORPHAN_AFTER_S = 2.0


@pytest.fixture(scope="module")
def replicas(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[TetherServer]]:
    folder = tmp_path_factory.mktemp("replicas")
    (folder / "keys").write_text(KEYS)
    url = postgres.new_database()
    servers = [
        TetherServer(folder / f"{name}.db", "--api-keys-file", str(folder / "keys"), *SLOW, store=url)
        for name in ("a", "b")
    ]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


def client(server: TetherServer, key: str = "sk-alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


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
    # The instant the terminal event arrived, B can continue it: it was stored before it went out.
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


def test_a_stream_ending_on_one_replica_is_continued_at_once_on_another(replicas: list[TetherServer]) -> None:
    a, b = (client(server) for server in replicas)
    for turn in range(20):
        with a.responses.create(model=SCRIPTED, input=f"Turn {turn}.", stream=True, max_output_tokens=2) as s:
            last = [event for event in s][-1]
        assert last.type == "response.completed"
        follow = b.responses.create(model=SCRIPTED, input="On.", previous_response_id=last.response.id)
        assert follow.status == "completed"


def test_a_background_response_streams_live_from_another_replica_and_is_cancelled_there(
    replicas: list[TetherServer],
) -> None:
    a, b = (client(server) for server in replicas)
    started = a.responses.create(model=SCRIPTED, input="Go on.", background=True, max_output_tokens=5000)
    seen = []
    with b.responses.retrieve(started.id, stream=True, starting_after=0) as stream:
        events = iter(stream)
        while len([e for e in seen if e.type == "response.output_text.delta"]) < 5:
            seen.append(next(events))
        assert a.responses.retrieve(started.id).status == "in_progress"  # live, not replayed
        cancelled = b.responses.cancel(started.id)
        seen.extend(events)  # a cancelled response's stream just ends
    assert cancelled.status == "cancelled"
    assert [e.sequence_number for e in seen] == list(range(1, len(seen) + 1))
    assert a.responses.retrieve(started.id).status == "cancelled"
    assert b.responses.cancel(started.id).status == "cancelled"  # idempotent, from either


def test_a_response_running_on_another_replica_is_reported_as_running(replicas: list[TetherServer]) -> None:
    a, b = (client(server) for server in replicas)
    started = a.responses.create(model=SCRIPTED, input="Long.", background=True, max_output_tokens=1000)
    assert b.responses.retrieve(started.id).status in ("queued", "in_progress")
    assert [i.id for i in b.responses.input_items.list(started.id).data]
    with pytest.raises(openai.BadRequestError, match="still in progress"):
        b.responses.delete(started.id)
    with pytest.raises(openai.BadRequestError, match="has not finished yet"):
        b.responses.create(model=SCRIPTED, input="Next.", previous_response_id=started.id)
    with pytest.raises(openai.NotFoundError):
        client(replicas[1], "sk-bob").responses.cancel(started.id)
    b.responses.cancel(started.id)


def test_a_killed_replica_s_responses_end_failed_on_the_others(postgres: Postgres, tmp_path: Path) -> None:
    """A is killed mid-response and mid-background; B ends both `failed` (`server_error`) once A's
    lease has lapsed, and a stream B was serving of A's background response ends there too."""
    url = postgres.new_database()
    orphans = ("--orphan-after-s", str(ORPHAN_AFTER_S), *SLOW)
    a_server, b_server = (TetherServer(tmp_path / f"{n}.db", *orphans, store=url).start() for n in "ab")
    try:
        a, b = a_server.client(), b_server.client()
        background = a.responses.create(
            model=SCRIPTED, input="Long.", background=True, max_output_tokens=5000
        )
        streaming = a.responses.create(model=SCRIPTED, input="Long too.", stream=True, max_output_tokens=5000)
        foreground = next(iter(streaming)).response.id
        followed = b.responses.retrieve(background.id, stream=True, starting_after=0)
        events = iter(followed)
        first = next(events)
        a_server.kill()
        killed = time.monotonic()
        rest = list(events)
        for response_id in (background.id, foreground):
            ended = b.responses.retrieve(response_id)
            assert ended.status == "failed" and ended.error is not None
            assert ended.error.code == "server_error" and "stopped before it finished" in ended.error.message
        took = time.monotonic() - killed
        assert first.sequence_number == 1 and rest[-1].type == "response.failed"
        assert [e.sequence_number for e in [first, *rest]] == list(range(1, len(rest) + 2))
        with pytest.raises(openai.BadRequestError, match="not found"):
            b.responses.create(model=SCRIPTED, input="On.", previous_response_id=foreground)
        print(f"orphans ended {took:.1f} s after the kill (--orphan-after-s {ORPHAN_AFTER_S})")
    finally:
        a_server.stop()
        b_server.stop()


def test_a_replica_taken_for_dead_tells_its_client_the_end_the_store_holds(
    postgres: Postgres, tmp_path: Path
) -> None:
    """A is frozen (SIGSTOP) mid-stream for longer than its lease: B ends the response `failed` as
    an orphan. Thawed, A finishes it, but the store's end stands, and A's client is told that
    end, not the one A reached: the client and every replica agree."""
    url = postgres.new_database()
    flags = ("--orphan-after-s", str(ORPHAN_AFTER_S), *SLOW)
    a_server, b_server = (TetherServer(tmp_path / f"{n}.db", *flags, store=url).start() for n in "ab")
    try:
        assert a_server.process is not None
        a, b = a_server.client(), b_server.client()
        with a.responses.create(model=SCRIPTED, input="Long.", stream=True, max_output_tokens=1500) as stream:
            events = iter(stream)
            created = next(events)
            a_server.process.send_signal(signal.SIGSTOP)
            try:
                deadline = time.monotonic() + 60
                while b.responses.retrieve(created.response.id).status == "in_progress":
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            finally:
                a_server.process.send_signal(signal.SIGCONT)
            rest = list(events)
        told = rest[-1]
        assert told.type == "response.failed" and told.response.error is not None
        assert told.response.error.code == "server_error"
        assert [e.sequence_number for e in [created, *rest]] == list(range(len(rest) + 1))
        stored = b.responses.retrieve(created.response.id)
        assert stored.status == "failed" and stored.output == told.response.output
    finally:
        a_server.stop()
        b_server.stop()
