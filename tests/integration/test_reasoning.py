"""A reasoning model behind an engine (its `reasoning_content`): the thinking becomes a
`reasoning` item with its own events, before the answer, never mixed into it; sealed in the
item's `encrypted_content` when asked, and shown to the engine again, from the chain or from a
stateless client's replay of the blob, exactly alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai.types.responses import Response, ResponseReasoningItem, ResponseReasoningTextDeltaEvent

from tests.recording_proxy import Recorder
from tests.sdk_shapes import unknown_keys
from tests.server_process import TetherServer
from tether.bench.engine import MODEL
from tether.bench.servers import ServerProcess, bench_engine

SEALED = ["reasoning.encrypted_content"]
THOUGHT = " thought0 thought1 thought2"  # what the engine thinks before each answer


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reasoning")


@pytest.fixture(scope="module")
def recorder(folder: Path) -> Iterator[Recorder]:
    """The stand-in engine, thinking three deltas before each answer, behind a recording proxy."""
    engine: ServerProcess = bench_engine(folder / "engine.log", reasoning=3)
    with engine, Recorder(engine, folder) as proxy:
        yield proxy


def serve(db: Path, recorder: Recorder, *flags: str) -> TetherServer:
    return TetherServer(db, "--upstream", recorder.base_url, *flags, model=None)


@pytest.fixture(scope="module")
def thinking(recorder: Recorder, folder: Path) -> Iterator[TetherServer]:
    with serve(folder / "tether.db", recorder) as server:
        yield server


def turn(conn: Any, **params: Any) -> tuple[Response, list[Any]]:
    conn.response.create(model=MODEL, max_output_tokens=2, **params)
    events = []
    for event in conn:
        events.append(event)
        assert not unknown_keys(event.to_dict()), event  # exactly the SDK's shapes
        if event.type == "response.completed":
            return event.response, events
        assert event.type != "error" and not event.type.endswith(("failed", "incomplete")), event
    raise AssertionError("the socket closed before the response ended")


def as_codex_replays(item: ResponseReasoningItem) -> dict[str, Any]:
    """A reasoning item as Codex sends it back: no readable content, only the blob."""
    return {"type": "reasoning", "id": item.id, "summary": [], "encrypted_content": item.encrypted_content}


def assistant_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "assistant"]


def test_the_thinking_is_a_reasoning_item_before_the_answer(thinking: TetherServer) -> None:
    response = thinking.client().responses.create(
        model=MODEL, input="Why is the sky blue?", max_output_tokens=4
    )
    reasoning, message = response.output
    assert isinstance(reasoning, ResponseReasoningItem) and reasoning.id.startswith("rs_")
    assert reasoning.content is not None and reasoning.content[0].text == THOUGHT
    assert reasoning.summary == [] and reasoning.status == "completed"
    assert reasoning.encrypted_content is None  # not asked for
    assert message.type == "message" and "thought" not in response.output_text
    assert response.usage is not None and response.usage.output_tokens == 7  # the engine's count


def test_its_events_and_its_sealed_thinking_over_http(thinking: TetherServer) -> None:
    events = list(
        thinking.client().responses.create(
            model=MODEL, input="Think first.", max_output_tokens=2, include=SEALED, stream=True
        )
    )
    assert [unknown_keys(e.to_dict()) for e in events] == [[] for _ in events]  # the SDK's shapes
    deltas = [e for e in events if isinstance(e, ResponseReasoningTextDeltaEvent)]
    assert [d.delta for d in deltas] == [" thought0", " thought1", " thought2"]
    done = next(e for e in events if e.type == "response.reasoning_text.done")
    assert done.text == THOUGHT
    added, closed = (
        e.item for e in events if e.type.startswith("response.output_item.") and e.output_index == 0
    )
    assert isinstance(added, ResponseReasoningItem) and added.encrypted_content is None
    assert isinstance(closed, ResponseReasoningItem) and closed.encrypted_content is not None
    assert "thought" not in closed.encrypted_content  # nothing readable
    final = events[-1].response.output[0]
    assert isinstance(final, ResponseReasoningItem) and final.encrypted_content == closed.encrypted_content


def test_a_stateless_replay_of_the_blob_shows_the_engine_what_the_chain_shows(
    thinking: TetherServer, recorder: Recorder
) -> None:
    """Codex's way: `store: false`, and each turn either continues the previous response or
    replays everything with the reasoning item reduced to its blob. The engine gets the same
    messages both ways, the thinking on the assistant message it came before."""
    with thinking.client().responses.connect() as conn:
        first, _ = turn(conn, input="Think first.", store=False, include=SEALED)
        since = len(recorder.entries())
        go_on = {"role": "user", "content": "Go on."}
        turn(conn, input=[go_on], previous_response_id=first.id, store=False, include=SEALED)
        reasoning, message = first.output
        assert isinstance(reasoning, ResponseReasoningItem)
        replay = [{"role": "user", "content": "Think first."}, as_codex_replays(reasoning),
                  message.model_dump(exclude_none=True), go_on]  # fmt: skip
        turn(conn, input=replay, store=False, include=SEALED)
    chained, replayed = (entry["json"] for entry in recorder.completions(since))
    assert replayed["messages"] == chained["messages"]
    thought = assistant_messages(chained)[0]
    assert thought["reasoning_content"] == thought["reasoning"] == THOUGHT


def test_a_blob_that_does_not_open_is_dropped_and_the_turn_goes_on(
    thinking: TetherServer, recorder: Recorder
) -> None:
    client = thinking.client()
    first = client.responses.create(model=MODEL, input="Think.", max_output_tokens=2, include=SEALED)
    reasoning = first.output[0]
    assert isinstance(reasoning, ResponseReasoningItem) and reasoning.encrypted_content is not None
    blob = reasoning.encrypted_content
    altered = blob[:-6] + ("A" if blob[-6] != "A" else "B") + blob[-5:]
    since = len(recorder.entries())
    for encrypted_content in (altered, "gAAAAABsomeoneElsesBlob=="):
        item = {**as_codex_replays(reasoning), "encrypted_content": encrypted_content}
        replay = [{"role": "user", "content": "Think."}, item, {"role": "user", "content": "More."}]
        again = client.responses.create(model=MODEL, input=replay, max_output_tokens=2, store=False)
        assert again.status == "completed"
    for entry in recorder.completions(since):
        assert "reasoning_content" not in str(entry["json"]["messages"])


def test_the_key_is_kept_in_the_store_or_given_by_the_operator(recorder: Recorder, tmp_path: Path) -> None:
    """Without `--reasoning-key`, a restarted process (or any sharing the store) opens what the
    last one sealed; one with its own store does not. With the same key, any process opens it."""

    def blob(server: TetherServer) -> dict[str, Any]:
        made = server.client().responses.create(model=MODEL, input="Hm.", max_output_tokens=1, include=SEALED)
        assert isinstance(made.output[0], ResponseReasoningItem)
        return as_codex_replays(made.output[0])

    def shown(server: TetherServer, item: dict[str, Any]) -> bool:
        since = len(recorder.entries())
        server.client().responses.create(model=MODEL, input=[item, {"role": "assistant", "content": "Yes."}],
                                         max_output_tokens=1, store=False)  # fmt: skip
        return assistant_messages(recorder.completions(since)[0]["json"])[0].get("reasoning") == THOUGHT

    with serve(tmp_path / "a.db", recorder) as server:
        kept = blob(server)
    with serve(tmp_path / "a.db", recorder) as restarted, serve(tmp_path / "b.db", recorder) as other:
        assert shown(restarted, kept) and not shown(other, kept)
    key = ("--reasoning-key", "k" * 32)
    with serve(tmp_path / "c.db", recorder, *key) as one, serve(tmp_path / "d.db", recorder, *key) as two:
        assert shown(two, blob(one))
