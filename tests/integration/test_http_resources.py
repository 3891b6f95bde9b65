"""Retrieve, delete, input items, background and cancel, token counting, compaction (§10.4 to §10.9)."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer


def test_retrieve_replays_stored_events_after_a_cursor(client: openai.OpenAI) -> None:
    streamed = list(client.responses.create(model=SCRIPTED, input="Replay me.", stream=True))
    response_id = streamed[0].response.id
    replayed = list(client.responses.retrieve(response_id, stream=True, starting_after=3))
    assert [e.sequence_number for e in replayed] == [e.sequence_number for e in streamed[4:]]
    assert [e.type for e in replayed] == [e.type for e in streamed[4:]]
    assert replayed[-1].response.output_text == streamed[-1].response.output_text


def test_delete_removes_a_stored_response(client: openai.OpenAI) -> None:
    response = client.responses.create(model=SCRIPTED, input="Forget me.")
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve(response.id)
    assert f"'{response.id}'" in caught.value.message
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(response.id)


def test_delete_answers_the_documented_body(scripted_server: TetherServer) -> None:
    response = scripted_server.client().responses.create(model=SCRIPTED, input="x")
    reply = httpx.delete(f"{scripted_server.base_url}/responses/{response.id}")
    assert reply.status_code == 200
    assert reply.json() == {"id": response.id, "object": "response", "deleted": True}


def test_input_items_paginate_in_both_orders(client: openai.OpenAI) -> None:
    words = [f"item {i}" for i in range(7)]
    response = client.responses.create(
        model=SCRIPTED, input=[{"role": "user", "content": word} for word in words]
    )
    first_page = client.responses.input_items.list(response.id, limit=3, order="asc")
    assert first_page.has_more is True and len(first_page.data) == 3
    every = [item.content[0].text for item in first_page]  # type: ignore[union-attr]
    assert every == words
    newest_first = client.responses.input_items.list(response.id, limit=100)
    assert [i.content[0].text for i in newest_first.data] == words[::-1]  # type: ignore[union-attr]
    assert newest_first.has_more is False
    assert newest_first.first_id == newest_first.data[0].id
    assert newest_first.last_id == newest_first.data[-1].id


def test_client_ids_on_input_items_are_kept(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=SCRIPTED,
        input=[{"type": "message", "id": "msg_mine", "role": "user", "content": "hello"}],
    )
    assert client.responses.input_items.list(response.id).data[0].id == "msg_mine"


def test_background_response_runs_after_the_post_and_can_be_polled(
    slow_server: TetherServer,
) -> None:
    client = slow_server.client()
    queued = client.responses.create(
        model=SCRIPTED, input="Take your time.", background=True, max_output_tokens=20
    )
    assert queued.status in ("queued", "in_progress") and queued.background is True
    deadline = time.monotonic() + 30
    while (polled := client.responses.retrieve(queued.id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert polled.status == "completed"
    assert polled.usage is not None and polled.usage.output_tokens == 20


def test_background_cancel_stops_generation_and_is_idempotent(slow_server: TetherServer) -> None:
    client = slow_server.client()
    started = client.responses.create(
        model=SCRIPTED, input="A long story.", background=True, max_output_tokens=1000
    )
    stream = client.responses.retrieve(started.id, stream=True)
    for event in stream:  # wait until text is flowing
        if event.type == "response.output_text.delta":
            break
    cancelled = client.responses.cancel(started.id)
    assert cancelled.status == "cancelled"
    produced = cancelled.output[0].content[0].text  # type: ignore[union-attr]
    assert 0 < len(produced) < 1000 * 4
    again = client.responses.cancel(started.id)
    assert again.status == "cancelled"
    assert client.responses.retrieve(started.id).status == "cancelled"


def test_background_stream_resumes_after_a_dropped_connection(slow_server: TetherServer) -> None:
    """§10.2: a dropped client resumes with `starting_after` and misses nothing."""
    client = slow_server.client()
    stream = client.responses.create(
        model=SCRIPTED, input="Resume me.", background=True, stream=True, max_output_tokens=30
    )
    seen = []
    for event in stream:
        seen.append(event)
        if len(seen) == 6:
            break
    stream.close()
    assert seen[0].response.status == "queued"
    rest = list(client.responses.retrieve(seen[0].response.id, stream=True, starting_after=5))
    numbers = [e.sequence_number for e in seen + rest]
    assert numbers == list(range(len(numbers)))
    assert rest[-1].type == "response.completed"


def test_cancel_refuses_a_response_that_was_not_background(client: openai.OpenAI) -> None:
    response = client.responses.create(model=SCRIPTED, input="hi")
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_unknown")


def test_input_tokens_counts_the_chain_and_the_new_input(client: openai.OpenAI) -> None:
    first = client.responses.create(model=SCRIPTED, input="A first turn.")
    counted = client.responses.input_tokens.count(
        model=SCRIPTED, input="Next.", previous_response_id=first.id
    )
    follow = client.responses.create(model=SCRIPTED, input="Next.", previous_response_id=first.id)
    assert counted.object == "response.input_tokens"
    assert follow.usage is not None and counted.input_tokens == follow.usage.input_tokens


def test_compact_returns_a_window_that_works_as_input(client: openai.OpenAI) -> None:
    first = client.responses.create(model=SCRIPTED, input="Fix the failing test.")
    compacted = client.responses.compact(model=SCRIPTED, previous_response_id=first.id)
    kinds = [item.type for item in compacted.output]
    assert kinds == ["message", "compaction"]
    assert compacted.usage.input_tokens > 0
    window = [item.model_dump(exclude_none=True, warnings=False) for item in compacted.output]
    follow = client.responses.create(model=SCRIPTED, input=[*window, {"role": "user", "content": "Go on."}])
    assert follow.status == "completed"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model=SCRIPTED, input=[{"type": "compaction", "encrypted_content": "not ours"}]
        )
    assert caught.value.param == "input"


def test_every_item_of_a_compacted_window_is_complete(client: openai.OpenAI) -> None:
    """Each output item has everything an output item of its type has (an Open Responses suite
    rejects a window whose messages lack `id` or `status`); a message keeps its stored id."""
    first = client.responses.create(model=SCRIPTED, input="Fix the failing test.")
    reply = client.responses.with_raw_response.compact(model=SCRIPTED, previous_response_id=first.id)
    message, compacted = reply.http_response.json()["output"]
    assert set(message) == {"id", "type", "role", "status", "content"}
    assert message["status"] == "completed" and message["role"] == "user"
    assert message["content"] == [{"type": "input_text", "text": "Fix the failing test."}]
    (stored_input,) = client.responses.input_items.list(first.id).data
    assert message["id"] == stored_input.id
    assert compacted["id"].startswith("cmp_") and compacted["encrypted_content"]


def test_models_and_health(scripted_server: TetherServer) -> None:
    models = scripted_server.client().models.list()
    assert [m.id for m in models.data] == [SCRIPTED]
    # Nothing the scripted model cannot know (a context length, a prompt format).
    assert not models.data[0].model_extra
    health = httpx.get(f"http://127.0.0.1:{scripted_server.port}/healthz").json()
    assert health == {"status": "ok", "models": [SCRIPTED]}
