"""The connection-local cache (§8.2, §8.3, §8.5): what a WebSocket remembers, and for whom."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import SCRIPTED
from tests.integration.test_http_create import WEATHER_TOOL
from tests.integration.test_metrics import scrape, value
from tests.server_process import TetherServer
from tests.ws_client import RawSocket


def final(events: list[dict[str, object]]) -> dict[str, object]:
    assert events[-1]["type"] == "response.completed", events[-1]
    return events[-1]["response"]  # type: ignore[return-value]


def error_code(events: list[dict[str, object]]) -> str:
    assert events[-1]["type"] == "error", events[-1]
    return events[-1]["error"]["code"]  # type: ignore[index,no-any-return]


def test_a_store_false_chain_lives_only_on_its_connection(scripted_server: TetherServer) -> None:
    """§8.2 rule 9, D1: other sockets and HTTP get previous_response_not_found; GET is 404."""
    with RawSocket(scripted_server) as ws:
        first = final(ws.turn(input="secret", store=False))
        second = final(ws.turn(input="more", store=False, previous_response_id=first["id"]))
        assert second["previous_response_id"] == first["id"]
        with RawSocket(scripted_server) as other:
            assert error_code(other.turn(previous_response_id=first["id"], input="x")) == (
                "previous_response_not_found"
            )
        client = scripted_server.client()
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model=SCRIPTED, input="x", previous_response_id=first["id"])
        assert caught.value.code == "previous_response_not_found"
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(str(first["id"]))


def test_a_store_true_response_made_on_a_socket_is_everywhere(scripted_server: TetherServer) -> None:
    with RawSocket(scripted_server) as ws:
        made = final(ws.turn(input="keep me", store=True))
    client = scripted_server.client()
    assert client.responses.retrieve(str(made["id"])).status == "completed"
    with RawSocket(scripted_server) as other:
        follow = final(other.turn(input="next", previous_response_id=made["id"]))
    assert follow["usage"]["input_tokens_details"]["cached_tokens"] > 0  # type: ignore[index]


def test_a_failed_continuation_evicts_its_parent(scripted_server: TetherServer) -> None:
    """D10 and §5.5 G: after an unmatched call_id, the store:false parent is gone."""
    with RawSocket(scripted_server) as ws:
        call = final(ws.turn(input="Weather?", store=False, tools=[WEATHER_TOOL]))
        call_id = call["output"][0]["call_id"]  # type: ignore[index]
        bad = [{"type": "function_call_output", "call_id": "call_nope", "output": "x"}]
        failed = ws.turn(store=False, previous_response_id=call["id"], input=bad)
        assert error_code(failed) == "invalid_request_error"
        assert failed[-1]["error"]["param"] == "input"  # type: ignore[index]
        good = [{"type": "function_call_output", "call_id": call_id, "output": "sunny"}]
        retry = ws.turn(store=False, previous_response_id=call["id"], input=good)
        assert error_code(retry) == "previous_response_not_found"


def test_an_evicted_store_true_parent_is_hydrated_from_storage(scripted_server: TetherServer) -> None:
    with RawSocket(scripted_server) as ws:
        parent = final(ws.turn(input="Weather?", tools=[WEATHER_TOOL]))
        bad = [{"type": "function_call_output", "call_id": "call_nope", "output": "x"}]
        ws.turn(previous_response_id=parent["id"], input=bad)
        good = [{"type": "function_call_output", "call_id": parent["output"][0]["call_id"], "output": "ok"}]  # type: ignore[index]
        assert final(ws.turn(previous_response_id=parent["id"], input=good, tools=[WEATHER_TOOL]))


def test_a_failed_fork_from_another_lane_keeps_the_parent(scripted_server: TetherServer) -> None:
    """§8.2 rule 5."""
    with RawSocket(scripted_server) as ws:
        parent = final(ws.turn(input="Weather?", store=False, tools=[WEATHER_TOOL], stream_id="main"))
        bad = [{"type": "function_call_output", "call_id": "call_nope", "output": "x"}]
        fork = ws.turn(stream_id="side", store=False, previous_response_id=parent["id"], input=bad)
        assert error_code(fork) == "invalid_request_error"
        good = [{"type": "function_call_output", "call_id": parent["output"][0]["call_id"], "output": "ok"}]  # type: ignore[index]
        assert final(ws.turn(stream_id="main", store=False, previous_response_id=parent["id"], input=good))


def test_two_lanes_can_fork_one_parent(scripted_server: TetherServer) -> None:
    with RawSocket(scripted_server) as ws:
        root = final(ws.turn(input="root", store=False))
        left = final(ws.turn(stream_id="left", store=False, previous_response_id=root["id"], input="L"))
        right = final(ws.turn(stream_id="right", store=False, previous_response_id=root["id"], input="R"))
        assert left["previous_response_id"] == right["previous_response_id"] == root["id"]
        # The recent-responses memory still holds the root after two newer lanes finished.
        again = final(ws.turn(store=False, previous_response_id=root["id"], input="A"))
        assert again["usage"]["input_tokens"] == left["usage"]["input_tokens"]  # type: ignore[index]


def test_continuing_a_response_still_running_on_another_lane_is_refused(slow_server: TetherServer) -> None:
    with RawSocket(slow_server) as ws:
        ws.create(stream_id="busy", input="long", max_output_tokens=100, store=False)
        created = ws.recv()
        assert created["type"] == "response.created"
        ws.create(stream_id="other", previous_response_id=created["response"]["id"], input="x")
        while (event := ws.recv())["type"] != "error":
            pass
        assert event["stream_id"] == "other"
        assert event["error"]["param"] == "previous_response_id"
        assert "has not finished" in event["error"]["message"]


def test_a_warm_up_is_created_then_completed_and_chainable(scripted_server: TetherServer) -> None:
    """D2, §8.5: exactly two events, no output, usage with output 0; the next turn finds it warm."""
    with RawSocket(scripted_server) as ws:
        warm = ws.turn(
            generate=False, store=False, instructions="You are a coder.", tools=[WEATHER_TOOL],
            input=[{"role": "developer", "content": "The repo uses pytest."}],
        )  # fmt: skip
        assert [e["type"] for e in warm] == ["response.created", "response.completed"]
        assert [e["sequence_number"] for e in warm] == [0, 1]
        done = warm[-1]["response"]
        assert done["output"] == [] and done["status"] == "completed"
        assert done["usage"]["output_tokens"] == 0 and done["usage"]["input_tokens"] > 0
        follow = final(ws.turn(store=False, previous_response_id=done["id"], input="Fix it.",
                               tools=[WEATHER_TOOL], instructions="You are a coder."))  # fmt: skip
        # The warm-up's whole context, in whole 4-byte tokens (its last one may be partial).
        cached = follow["usage"]["input_tokens_details"]["cached_tokens"]  # type: ignore[index]
        assert done["usage"]["input_tokens"] - 1 <= cached <= done["usage"]["input_tokens"]


def test_a_warm_up_is_answered_before_its_prefill_and_its_continuation_waits_for_it(tmp_path: Path) -> None:
    """A slow engine must not keep a warm-up's answer waiting (Codex gives up after its connect
    timeout): the answer comes first, the prefill runs on, and the next turn waits for it and
    finds the whole warm-up cached. The scripted model here prefills 2,000 tokens a second."""
    context = [{"role": "developer", "content": "Project notes. " * 400}]  # ~1,500 tokens: 0.75 s
    with TetherServer(tmp_path / "t.db", "--scripted-prefill-us", "500") as server, RawSocket(server) as ws:
        warm = final(ws.turn(generate=False, store=False, input=context))
        assert warm["usage"] == {**warm["usage"], "output_tokens": 0}  # type: ignore[dict-item]
        assert value(scrape(server), "tether_warm_up_prefills") == 1  # answered; prefill running
        follow = final(ws.turn(store=False, previous_response_id=warm["id"], input="Go."))
        cached = follow["usage"]["input_tokens_details"]["cached_tokens"]  # type: ignore[index]
        assert cached >= warm["usage"]["input_tokens"] - 1  # type: ignore[index]
        assert value(scrape(server), "tether_warm_up_prefills") == 0


def test_prewarm_forces_a_warm_up(scripted_server: TetherServer) -> None:
    with RawSocket(scripted_server) as ws:
        warm = ws.turn(input="x", prompt_cache_options={"prewarm": True})
    assert [e["type"] for e in warm] == ["response.created", "response.completed"]


def test_a_store_true_warm_up_is_stored(scripted_server: TetherServer) -> None:
    with RawSocket(scripted_server) as ws:
        warm = final(ws.turn(input="x", generate=False))
    reply = httpx.get(f"{scripted_server.base_url}/responses/{warm['id']}")
    assert reply.status_code == 200 and reply.json()["output"] == []


def test_item_references_resolve_in_the_connection_cache(scripted_server: TetherServer) -> None:
    with RawSocket(scripted_server) as ws:
        first = final(ws.turn(input="remember", store=False))
        item_id = first["output"][0]["id"]  # type: ignore[index]
        follow = ws.turn(
            store=False, input=[{"type": "item_reference", "id": item_id}, {"role": "user", "content": "ok"}]
        )
        assert final(follow)
