"""Incremental continuation on the local engine: a turn prefills only what is new.

Every number here is a token count reported in `usage`, never a time.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import LOCAL
from tests.server_process import TetherServer
from tests.ws_client import RawSocket

pytestmark = pytest.mark.local_model

GREEDY = {"model": LOCAL, "temperature": 0, "max_output_tokens": 12}


def done(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert events[-1]["type"] in ("response.completed", "response.incomplete"), events[-1]
    response: dict[str, Any] = events[-1]["response"]
    return response


def turn(ws: RawSocket, text: str, previous: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    if previous is not None:
        fields["previous_response_id"] = previous["id"]
    return done(ws.turn(input=[{"role": "user", "content": text}], store=False, **{**GREEDY, **fields}))


def covered(parent: dict[str, Any]) -> int:
    """The parent's whole conversation, less the final sampled token that was never fed back."""
    return int(parent["usage"]["input_tokens"] + parent["usage"]["output_tokens"] - 1)


def cached(response: dict[str, Any]) -> int:
    return int(response["usage"]["input_tokens_details"]["cached_tokens"])


def test_every_turn_of_a_chain_finds_its_parent_cached(local_server: TetherServer) -> None:
    with RawSocket(local_server) as ws:
        previous = turn(ws, "Name a fruit.", instructions="Answer briefly.")
        for n in range(2, 7):
            response = turn(ws, f"Now name fruit number {n}.", previous, instructions="Answer briefly.")
            assert cached(response) >= covered(previous), (n, response["usage"], previous["usage"])
            # Only the closing of the parent's turn and the new message were prefilled.
            assert response["usage"]["input_tokens"] - cached(response) < 40
            previous = response


def test_a_warm_up_makes_the_next_turn_start_warm(local_server: TetherServer) -> None:
    with RawSocket(local_server) as ws:
        context = [{"role": "developer", "content": "The project uses pytest."}]
        warm = done(
            ws.turn(generate=False, store=False, model=LOCAL, instructions="You are terse.", input=context)
        )
        assert warm["output"] == [] and warm["usage"]["output_tokens"] == 0
        response = turn(ws, "Which test runner?", warm, instructions="You are terse.")
        assert cached(response) >= warm["usage"]["input_tokens"]


def test_a_displaced_conversation_is_restored_not_re_prefilled(
    local_server_one_sequence: TetherServer,
) -> None:
    with RawSocket(local_server_one_sequence) as ws:
        mine = turn(ws, "Tell me about the sea.")
        turn(ws, "A completely different conversation about mountains.")  # displaces `mine`
        back = turn(ws, "And about rivers?", mine)
        assert cached(back) >= covered(mine)


def test_http_chaining_reuses_a_snapshot(local_server_one_sequence: TetherServer) -> None:
    client = local_server_one_sequence.client()
    first = client.responses.create(input="Describe a cat.", **GREEDY)
    client.responses.create(input="Describe a spaceship in detail.", **GREEDY)  # displaces it
    follow = client.responses.create(input="And a dog?", previous_response_id=first.id, **GREEDY)
    assert first.usage is not None and follow.usage is not None
    parent = first.usage.input_tokens + first.usage.output_tokens - 1
    assert follow.usage.input_tokens_details.cached_tokens >= parent


def forks(server: TetherServer) -> tuple[list[str], list[int]]:
    """A parent, an unrelated conversation that displaces it, then two forks of the parent."""
    with RawSocket(server) as ws:
        parent = turn(ws, "Write a short poem about autumn.")
        turn(ws, "List three programming languages.")
        first = turn(ws, "Make it about winter instead.", parent, stream_id="fork-a")
        second = turn(ws, "Make it about winter instead.", parent, stream_id="fork-b")
    texts = [r["output"][0]["content"][0]["text"] for r in (first, second)]
    return texts, [cached(first), cached(second)]


def test_greedy_output_is_the_same_warm_restored_or_cold(
    local_server: TetherServer,
    local_server_one_sequence: TetherServer,
    local_server_without_kv_cache: TetherServer,
) -> None:
    """The first fork runs after a restore (or, without a KV budget, after a re-prefill from
    the token ids; or with its parent still resident in a sequence of its own); the second finds
    the parent's prefix resident. Same tokens every way."""
    (resident, resident_again), _ = forks(local_server)
    (restored, warm), cached_with_kv = forks(local_server_one_sequence)
    (cold, warm_again), cached_without_kv = forks(local_server_without_kv_cache)
    assert restored == warm == cold == warm_again == resident == resident_again
    assert cached_without_kv[0] < cached_with_kv[0]  # the cold fork really re-prefilled


def interleaved_chains(server: TetherServer) -> list[tuple[str, int, int]]:
    """Two conversations taking turns on one socket: each turn displaces the other's KV."""
    results = []
    with RawSocket(server) as ws:
        a = turn(ws, "My name is Ada. Remember it.")
        b = turn(ws, "My name is Bob. Remember it.")
        for n in range(3):
            a = turn(ws, f"Question {n} for Ada.", a)
            b = turn(ws, f"Question {n} for Bob.", b)
            for r in (a, b):
                results.append((r["output"][0]["content"][0]["text"], r["usage"]["input_tokens"], cached(r)))
    return results


def test_chains_stay_intact_when_every_snapshot_is_evicted(
    local_server_one_sequence: TetherServer, local_server_without_kv_cache: TetherServer
) -> None:
    """Without room for snapshots each turn re-prefills from the token ids: the same prompts and
    the same greedy answers as with snapshots, only less of each prompt was cached."""
    with_kv = interleaved_chains(local_server_one_sequence)
    without_kv = interleaved_chains(local_server_without_kv_cache)
    assert [(text, tokens) for text, tokens, _ in with_kv] == [
        (text, tokens) for text, tokens, _ in without_kv
    ]
    assert sum(c for *_, c in without_kv) < sum(c for *_, c in with_kv)
    # Each snapshot dropped for want of room was dropped before the ttl it was asked for.
    assert early_evictions(local_server_without_kv_cache) > 0 == early_evictions(local_server_one_sequence)


def early_evictions(server: TetherServer) -> float:
    metrics = httpx.get(f"http://127.0.0.1:{server.port}/metrics").text
    [line] = [
        line for line in metrics.splitlines() if line.startswith("tether_kv_snapshot_early_evictions_total")
    ]
    return float(line.split()[-1])
