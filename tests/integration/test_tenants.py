"""Tenants: a key file maps keys to tenants, and one tenant's responses do not exist for another.

Every probe compares what another tenant sees with what an unknown id gives, so an id cannot be
tested for existence across tenants.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LOCAL, SCRIPTED
from tests.integration.test_cli import serve
from tests.server_process import TetherServer
from tests.ws_client import RawSocket

KEYS = """\
# tenant  key
alice     sk-alice-1
alice     sk-alice-2   # a second key of the same tenant
bob       sk-bob
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TetherServer]:
    folder = tmp_path_factory.mktemp("tenants")
    (folder / "keys").write_text(KEYS)
    process = TetherServer(
        folder / "tether.db", "--api-keys-file", str(folder / "keys"), "--scripted-decode-us", "20000",
        api_key="sk-default",
    ).start()  # fmt: skip
    yield process
    process.stop()


def client(server: TetherServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def http_error(server: TetherServer, key: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    reply = httpx.request(
        method, server.base_url + path, headers={"Authorization": f"Bearer {key}"}, **kwargs
    )
    return reply.status_code, reply.json()


def as_unknown(server: TetherServer, key: str, method: str, path: str, real_id: str, **kwargs: Any) -> None:
    """`key` gets for `real_id` exactly what it gets for an id that never existed."""
    seen = http_error(server, key, method, path.format(real_id), **kwargs)
    fake_id = "resp_" + "0" * (len(real_id) - 5)
    unknown = http_error(server, key, method, path.format(fake_id), **kwargs)
    assert seen[0] == unknown[0] == 404
    assert seen[1] == replaced(unknown[1], fake_id, real_id)


def replaced(body: Any, old: str, new: str) -> Any:
    if isinstance(body, dict):
        return {k: replaced(v, old, new) for k, v in body.items()}
    return body.replace(old, new) if isinstance(body, str) else body


def test_a_stored_response_exists_only_for_its_tenant(server: TetherServer) -> None:
    alice = client(server, "sk-alice-1")
    response = alice.responses.create(model=SCRIPTED, input="Alice's secret.", max_output_tokens=4)
    assert client(server, "sk-alice-2").responses.retrieve(response.id).id == response.id  # same tenant
    for key in ("sk-bob", "sk-default"):
        as_unknown(server, key, "GET", "/responses/{}", response.id)
        as_unknown(server, key, "GET", "/responses/{}?stream=true", response.id)
        as_unknown(server, key, "GET", "/responses/{}/input_items", response.id)
        as_unknown(server, key, "POST", "/responses/{}/cancel", response.id)
        as_unknown(server, key, "DELETE", "/responses/{}", response.id)
    assert alice.responses.retrieve(response.id).output_text  # bob's DELETE deleted nothing


def test_another_tenant_cannot_chain_from_or_reference_a_response(server: TetherServer) -> None:
    alice = client(server, "sk-alice-1")
    response = alice.responses.create(model=SCRIPTED, input="Alice's task.", max_output_tokens=4)
    bob = client(server, "sk-bob")
    with pytest.raises(openai.BadRequestError) as chained:
        bob.responses.create(model=SCRIPTED, input="x", previous_response_id=response.id)
    assert chained.value.code == "previous_response_not_found"
    item_id = alice.responses.input_items.list(response.id).data[0].id
    with pytest.raises(openai.BadRequestError) as referenced:
        bob.responses.create(model=SCRIPTED, input=[{"type": "item_reference", "id": item_id}])
    assert referenced.value.message.endswith(f"Item with id '{item_id}' not found.")
    assert alice.responses.create(model=SCRIPTED, input="Go on.", previous_response_id=response.id).id


def test_a_running_response_is_invisible_to_another_tenant(server: TetherServer) -> None:
    alice = client(server, "sk-alice-1")
    running = alice.responses.create(model=SCRIPTED, input="Long.", background=True, max_output_tokens=200)
    as_unknown(server, "sk-bob", "GET", "/responses/{}", running.id)
    as_unknown(server, "sk-bob", "POST", "/responses/{}/cancel", running.id)
    with RawSocket(server, key="sk-bob") as ws:
        # Not "has not finished yet": that would tell bob the id exists.
        error = ws.turn(previous_response_id=running.id, input="x")[-1]
        assert error["type"] == "error" and error["error"]["code"] == "previous_response_not_found"
    assert alice.responses.retrieve(running.id).status == "in_progress"
    assert alice.responses.cancel(running.id).status == "cancelled"


def test_a_websocket_s_stored_responses_belong_to_its_key_s_tenant(server: TetherServer) -> None:
    with RawSocket(server, key="sk-bob") as ws:
        done = ws.turn(input="Bob over a socket.", store=True, max_output_tokens=4)[-1]["response"]
    assert client(server, "sk-bob").responses.retrieve(done["id"]).id == done["id"]
    as_unknown(server, "sk-alice-1", "GET", "/responses/{}", done["id"])


def test_keys_never_reach_the_log(server: TetherServer) -> None:
    time.sleep(0.2)  # what the server logs of the tests above is written
    log = server.log_path.read_text()
    assert all(key not in log for key in ("sk-alice-1", "sk-alice-2", "sk-bob", "sk-default"))


def test_a_bad_keys_file_is_a_clear_startup_error(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("alice sk-1\nbob\n")
    refused = serve("--model", "scripted", "--api-keys-file", str(keys))
    assert refused.returncode == 2 and f"{keys}, line 2: expected 'TENANT KEY'" in refused.stderr
    keys.write_text("alice sk-1\nbob sk-1\n")
    refused = serve("--model", "scripted", "--api-keys-file", str(keys))
    assert refused.returncode == 2 and "this key already belongs to tenant 'alice'" in refused.stderr
    assert "sk-1" not in refused.stderr  # the error names the line, never the key


def test_sighup_reloads_the_keys_file_and_a_bad_one_changes_nothing(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("alice sk-alice\nbob sk-bob\n")
    server = TetherServer(tmp_path / "t.db", "--api-keys-file", str(keys)).start()
    assert server.process is not None

    def works(key: str) -> bool:
        return http_error(server, key, "GET", "/models")[0] == 200

    def reload_and_wait_for_log(count: int) -> None:
        server.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while server.log_path.read_text().count("reloaded") < count:
            assert time.monotonic() < deadline, "the server did not log the reload"
            time.sleep(0.05)

    try:
        assert works("sk-alice") and works("sk-bob") and not works("sk-carol")
        keys.write_text("alice sk-alice-rotated\ncarol sk-carol\n")
        reload_and_wait_for_log(1)
        assert works("sk-alice-rotated") and works("sk-carol")
        assert not works("sk-alice") and not works("sk-bob")
        keys.write_text("carol\n")  # broken: the keys in use stay
        reload_and_wait_for_log(2)
        keys.write_text("")  # no keys at all: would open the server, so refused
        reload_and_wait_for_log(3)
        assert works("sk-carol") and not works("sk-nobody")
        assert "sk-carol" not in server.log_path.read_text()
    finally:
        server.stop()


LONG_PROMPT = "Summarise the following notes. " + " ".join(
    f"Note {n}: the build passed on day {n}." for n in range(60)
)


@pytest.mark.local_model
def test_one_tenant_s_prompt_never_hits_another_tenant_s_cache(tmp_path: Path) -> None:
    """What the engine holds (resident, or snapshotted) is reused within a tenant only: otherwise
    bob could tell from `cached_tokens` (or from how fast his first token comes) what alice has
    just asked."""
    (tmp_path / "keys").write_text(KEYS)
    # One sequence: each tenant's prompt meets the other's tokens resident, then snapshotted.
    keys = ("--api-keys-file", str(tmp_path / "keys"))
    with TetherServer(tmp_path / "t.db", *keys, "--n-sequences", "1", model="local") as server:

        def ask(key: str) -> int:
            response = client(server, key).responses.create(
                model=LOCAL, input=LONG_PROMPT, max_output_tokens=4, temperature=0, store=False
            )
            assert response.usage is not None and response.usage.input_tokens > 500
            return response.usage.input_tokens_details.cached_tokens

        assert ask("sk-alice-1") == 0  # a fresh engine
        assert ask("sk-alice-2") > 500  # the same tenant (another key of it) reuses the prefix
        assert ask("sk-bob") == 0  # another tenant does not
        assert ask("sk-alice-1") > 500  # alice's prefix, displaced by bob's, comes back from its snapshot
        assert ask("sk-bob") > 500  # and bob finds his own, never alice's
