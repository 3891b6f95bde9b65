"""Reuse by content on the local engine: a request that names no parent still prefills only what
the engine has not seen, whichever connection or transport it comes on.

Every number here is a token count reported in `usage`, never a time.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_local_kv import GREEDY, cached, covered, done
from tests.integration.test_metrics import scrape
from tests.server_process import TetherServer
from tests.ws_client import RawSocket

pytestmark = pytest.mark.local_model

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def sent_back(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A response's output items as a client resends them in its next request's history."""
    return [{k: v for k, v in item.items() if v is not None} for item in response["output"]]


def text_of(response: dict[str, Any]) -> str:
    return str(response["output"][0]["content"][0]["text"])


# A reply cut at its budget whose last tokens, as the model sampled them, are not how its text
# tokenises again: a fresh rendering of the history differs from what the engine holds two
# tokens before the reply's end (measured on the shipped SmolLM2 file).
DRIFTING = {"instructions": "You are helpful.", "input": "Summarise the plot of Hamlet."}
DRIFTING_FIELDS = {**GREEDY, "instructions": DRIFTING["instructions"], "max_output_tokens": 80}


def whole_history_or_by_id(server: TetherServer) -> tuple[list[str], list[int], int]:
    """A stored first turn, an unrelated one that displaces it, then its continuation twice: once
    resending the whole history over HTTP (no parent named), once naming the parent."""
    client = server.client()
    first = client.responses.create(input=DRIFTING["input"], **DRIFTING_FIELDS).model_dump()
    assert first["status"] == "incomplete"  # cut at its budget
    client.responses.create(input="Describe a spaceship in detail.", **GREEDY)
    history = [user(DRIFTING["input"]), *sent_back(first), user("And Macbeth?")]
    resent = client.responses.create(input=history, **{**DRIFTING_FIELDS, "store": False}).model_dump()
    named = client.responses.create(
        input="And Macbeth?", previous_response_id=first["id"], **DRIFTING_FIELDS
    ).model_dump()
    assert resent["usage"]["input_tokens"] == named["usage"]["input_tokens"]
    return [text_of(resent), text_of(named)], [cached(resent), cached(named)], covered(first)


def test_a_client_resending_its_history_over_http_prefills_only_what_is_new(
    local_server: TetherServer, local_server_without_kv_cache: TetherServer
) -> None:
    (resent, named), cached_with_kv, parent = whole_history_or_by_id(local_server)
    # The first turn's KV came back whole, though no id named it and its text tokenises otherwise.
    assert cached_with_kv[0] >= parent
    # The same prompt, the same greedy answer, whether found by content, by id, or recomputed
    # from the token record after its KV was dropped (a server without room for snapshots).
    (cold_resent, cold_named), cached_without_kv, _ = whole_history_or_by_id(local_server_without_kv_cache)
    assert resent == named == cold_resent == cold_named
    assert cached_without_kv[0] < parent  # the cold server really re-prefilled


def test_a_websocket_chain_goes_on_over_a_new_socket_with_only_its_new_tokens(
    local_server: TetherServer,
) -> None:
    """As a client does after the connection's 60-minute cap or a restart: `store: false`, so it
    resends its whole context on the new socket and names no parent."""
    fields = {**GREEDY, "store": False, "instructions": "Answer briefly."}
    with RawSocket(local_server) as ws:
        first = done(ws.turn(input=[user("Name a colour.")], **fields))
        second = done(ws.turn(input=[user("Another one?")], previous_response_id=first["id"], **fields))
    context = [user("Name a colour."), *sent_back(first), user("Another one?"), *sent_back(second)]
    with RawSocket(local_server) as ws:
        again = done(ws.turn(input=[*context, user("And a third?")], **fields))
    assert cached(again) >= covered(second)
    assert again["usage"]["input_tokens"] - cached(again) < 40  # the closing and the new message


def test_a_tool_call_resent_in_the_history_is_found_too(local_server: TetherServer) -> None:
    fields = {**GREEDY, "store": False, "tools": [WEATHER]}
    client = local_server.client()
    call = client.responses.create(input="Weather in Paris?", tool_choice="required", **fields).model_dump()
    assert call["output"][0]["type"] == "function_call"
    result = {
        "type": "function_call_output",
        "call_id": call["output"][0]["call_id"],
        "output": "Sunny, 21 C",
    }
    history = [user("Weather in Paris?"), *sent_back(call), result]
    answer = client.responses.create(input=history, **fields).model_dump()
    assert cached(answer) >= covered(call)


def test_agents_sharing_instructions_and_tools_share_their_prefill(local_server: TetherServer) -> None:
    instructions = "You are a careful assistant for a build system. " + " ".join(
        f"Rule {n}: never change file number {n} without a test." for n in range(40)
    )
    fields = {**GREEDY, "store": False, "instructions": instructions, "tools": [WEATHER]}
    client = local_server.client()
    one = client.responses.create(input="Which files may I change?", **fields)
    other = client.responses.create(input="Summarise the rules in one line.", **fields)
    assert one.usage is not None and other.usage is not None
    assert one.usage.input_tokens > 500
    shared = other.usage.input_tokens_details.cached_tokens
    # Everything up to the second agent's own message: the whole system block, instructions and tools.
    assert one.usage.input_tokens - 20 < shared < other.usage.input_tokens


HEADS = (("id", "another"), ("id", "same"), ("content", "another"), ("content", "same"), ("none", "none"))


def heads(server: TetherServer) -> dict[tuple[str, str], float]:
    samples = scrape(server)
    labels = {(found, left): (("connection", left), ("found", found)) for found, left in HEADS}
    return {key: samples.get(("tether_prompt_heads_total", label), 0) for key, label in labels.items()}


def counted(server: TetherServer, before: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    return {key: count - before[key] for key, count in heads(server).items() if count != before[key]}


def test_prompts_are_counted_by_how_their_head_was_found(local_server: TetherServer) -> None:
    fields = {**GREEDY, "instructions": "Instructions no other test gives."}
    client = local_server.client()
    before = heads(local_server)
    first = client.responses.create(input="Count to three.", **fields).model_dump()  # none
    history = [user("Count to three."), *sent_back(first), user("Now to four.")]
    client.responses.create(input=history, **{**fields, "store": False})  # content, over HTTP
    client.responses.create(input="Now to five.", previous_response_id=first["id"], **fields)  # id
    assert counted(local_server, before) == {
        ("none", "none"): 1,
        ("content", "another"): 1,
        ("id", "another"): 1,
    }
    assert scrape(local_server)[("tether_kv_sequences_resident", ())] >= 1


def test_prompts_are_counted_by_the_connection_their_head_was_left_on(local_server: TetherServer) -> None:
    fields = {**GREEDY, "store": False, "instructions": "Other instructions no other test gives."}
    before = heads(local_server)
    with RawSocket(local_server) as ws:
        first = done(ws.turn(input=[user("Name a tree.")], **fields))  # none
        done(ws.turn(input=[user("Another?")], previous_response_id=first["id"], **fields))  # id, same
        history = [user("Name a tree."), *sent_back(first), user("A third?")]
        done(ws.turn(input=history, **fields))  # content, same socket
    with RawSocket(local_server) as ws:
        done(ws.turn(input=[*history, user("A fourth?")], **fields))  # content, another socket
    assert counted(local_server, before) == {
        ("none", "none"): 1, ("id", "same"): 1, ("content", "same"): 1, ("content", "another"): 1,
    }  # fmt: skip
