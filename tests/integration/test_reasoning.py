"""A reasoning model behind an engine (its `reasoning_content`): the thinking becomes a
`reasoning` item with its own events, before the answer, never mixed into it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai.types.responses import ResponseReasoningItem, ResponseReasoningTextDeltaEvent

from tests.server_process import TetherServer
from tether.bench.engine import MODEL
from tether.bench.servers import ServerProcess, bench_engine


@pytest.fixture(scope="module")
def thinking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TetherServer]:
    folder = tmp_path_factory.mktemp("reasoning")
    engine: ServerProcess = bench_engine(folder / "engine.log", reasoning=3)
    with engine, TetherServer(folder / "tether.db", "--upstream", engine.base_url, model=None) as server:
        yield server


def test_the_thinking_is_a_reasoning_item_before_the_answer(thinking: TetherServer) -> None:
    response = thinking.client().responses.create(
        model=MODEL, input="Why is the sky blue?", max_output_tokens=4
    )
    reasoning, message = response.output
    assert isinstance(reasoning, ResponseReasoningItem) and reasoning.id.startswith("rs_")
    assert reasoning.content is not None and reasoning.content[0].text == " thought0 thought1 thought2"
    assert reasoning.summary == [] and reasoning.status == "completed"
    assert message.type == "message" and "thought" not in response.output_text
    assert response.usage is not None and response.usage.output_tokens == 7  # the engine's count


def test_its_events_and_its_round_trip_over_a_websocket(thinking: TetherServer) -> None:
    with thinking.client().responses.connect() as conn:
        conn.response.create(model=MODEL, input="Think first.", max_output_tokens=2, store=False)
        events = []
        for event in conn:
            events.append(event)
            if event.type == "response.completed":
                break
        deltas = [e for e in events if isinstance(e, ResponseReasoningTextDeltaEvent)]
        assert [d.delta for d in deltas] == [" thought0", " thought1", " thought2"]
        done = next(e for e in events if e.type == "response.reasoning_text.done")
        assert done.text == "".join(d.delta for d in deltas)
        first = events[-1].response
        # A stateless client replays the reasoning item with the rest: accepted, not shown to the
        # engine (it never sees thinking again), and the turn goes on.
        replay = [{"role": "user", "content": "Think first."},
                  *[item.model_dump(exclude_none=True) for item in first.output],
                  {"role": "user", "content": "Go on."}]  # fmt: skip
        conn.response.create(model=MODEL, input=replay, max_output_tokens=2, store=False)
        again = next(e for e in conn if e.type == "response.completed").response
    assert again.status == "completed"
