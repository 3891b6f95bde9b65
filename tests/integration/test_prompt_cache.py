"""Prompt-cache controls with the official SDK (it types every field): `prompt_cache_options`
echoed, `prewarm` over HTTP and WebSocket, `cache_write_tokens` in usage."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LOCAL, SCRIPTED
from tests.server_process import TetherServer

CONTEXT = "The project is a Python web server. Tests run with pytest; style with ruff."


def written(response: Any) -> tuple[int, int]:
    details = response.usage.input_tokens_details
    return details.cached_tokens, details.cache_write_tokens


def test_the_options_applied_are_echoed_and_checked(scripted_server: TetherServer) -> None:
    client = scripted_server.client()
    plain = client.responses.create(model=SCRIPTED, input="Hi.")
    assert plain.prompt_cache_options is not None
    assert plain.prompt_cache_options.model_dump() == {
        "mode": "implicit",
        "ttl": "30m",
        "comparison_response_id": None,
    }
    kept = client.responses.create(model=SCRIPTED, input="Hi.", prompt_cache_options={"ttl": "12h"})
    assert kept.prompt_cache_options is not None and kept.prompt_cache_options.ttl == "12h"
    details = kept.usage.input_tokens_details  # type: ignore[union-attr]
    assert details.cache_write_tokens == kept.usage.input_tokens > 0  # type: ignore[union-attr]
    assert details.cache_write_tokens_details is not None
    assert details.cache_write_tokens_details.ttl_12h_tokens == details.cache_write_tokens
    assert details.cache_write_tokens_details.ttl_30m_tokens == 0
    for wrong in ({"ttl": "1h"}, {"mode": "sometimes"}, {"prewarm": "yes"}, {"colour": "blue"}):
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model=SCRIPTED, input="Hi.", prompt_cache_options=wrong)  # type: ignore[arg-type]
        assert refused.value.body["param"] == "prompt_cache_options"  # type: ignore[index]


@pytest.mark.parametrize("transport", ["http", "ws"])
def test_a_prewarm_writes_the_cache_and_the_next_turn_hits(
    scripted_server: TetherServer, transport: str
) -> None:
    client = scripted_server.client()
    prewarm: dict[str, Any] = {"model": SCRIPTED, "instructions": CONTEXT, "input": "Here is the repository.",
                               "prompt_cache_options": {"prewarm": True}}  # fmt: skip
    if transport == "http":
        warm = client.responses.create(**prewarm)
        turn = client.responses.create(model=SCRIPTED, instructions=CONTEXT, input="Which test runner?",
                                       previous_response_id=warm.id)  # fmt: skip
        # Over HTTP the answer waits for its prefill: what it wrote is known.
        assert written(warm) == (0, warm.usage.input_tokens)  # type: ignore[union-attr]
    else:
        with client.responses.connect() as conn:
            warm = run(conn, **prewarm)
            turn = run(conn, model=SCRIPTED, instructions=CONTEXT, input="Which test runner?",
                       previous_response_id=warm.id)  # fmt: skip
    assert warm.status == "completed" and warm.output == []
    assert warm.usage is not None and warm.usage.output_tokens == 0
    cached, wrote = written(turn)
    assert cached >= warm.usage.input_tokens - 1 and wrote == turn.usage.input_tokens - cached  # type: ignore[union-attr]


@pytest.mark.local_model
def test_an_http_prewarm_on_the_local_model_is_found_by_content(local_server: TetherServer) -> None:
    """Stateless HTTP: the prewarmed prefix is found again by what it says."""
    client = local_server.client()
    history = [
        {"role": "developer", "content": CONTEXT},
        {"role": "user", "content": "Here is the repository."},
    ]
    warm = client.responses.create(
        model=LOCAL, input=history, store=False, prompt_cache_options={"prewarm": True}
    )  # type: ignore[arg-type]
    assert warm.status == "completed" and warm.output == []
    cached, wrote = written(warm)
    assert wrote == warm.usage.input_tokens - cached > 0  # type: ignore[union-attr]
    turn = client.responses.create(
        model=LOCAL, store=False, max_output_tokens=8, temperature=0,
        input=[*history, {"role": "user", "content": "Which test runner?"}],  # type: ignore[list-item]
    )  # fmt: skip
    assert written(turn)[0] >= warm.usage.input_tokens  # type: ignore[union-attr]


def run(conn: Any, **params: Any) -> Any:
    conn.response.create(**params)
    for event in conn:
        if event.type in ("response.completed", "response.incomplete", "response.failed"):
            return event.response
        assert event.type != "error", event
    raise AssertionError("the socket closed before a terminal event")


TOOL = {"type": "function", "name": "read_file", "description": "Read a file.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}  # fmt: skip
OTHER_TOOL = {**TOOL, "name": "list_files", "description": "List the files."}


def compared(client: openai.OpenAI, comparison: str, **params: Any) -> Any:
    """A turn that asks for diagnostics against `comparison`; its diagnostics and usage."""
    params.setdefault("model", SCRIPTED)
    response = client.responses.create(prompt_cache_options={"comparison_response_id": comparison}, **params)
    return response


def missed(response: Any, reason: str) -> None:
    diagnostics = response.prompt_cache_diagnostics
    assert diagnostics.type == "cache_miss" and diagnostics.reason == reason, diagnostics
    usage = response.usage
    assert diagnostics.cache_missed_tokens == usage.input_tokens - usage.input_tokens_details.cached_tokens
    assert diagnostics.comparison_reusable_tokens == usage.input_tokens_details.cached_tokens


def test_each_change_is_named_as_the_reason_of_its_miss(scripted_server: TetherServer) -> None:
    client = scripted_server.client()
    first = client.responses.create(
        model=SCRIPTED, instructions=CONTEXT, tools=[TOOL], input="Read the README."
    )  # type: ignore[list-item]
    same = {"instructions": CONTEXT, "tools": [TOOL], "previous_response_id": first.id}
    hit = compared(client, first.id, input="Now the tests.", **same)
    assert hit.prompt_cache_diagnostics.type == "cache_hit"
    missed(
        compared(client, first.id, input="Now the tests.", **{**same, "tools": [TOOL, OTHER_TOOL]}),
        "tools_changed",
    )
    missed(
        compared(client, first.id, input="Now the tests.", **{**same, "instructions": "Be terse."}),
        "input_changed",
    )
    # Stateless: the whole history sent again, an earlier message edited.
    history = [
        {"role": "user", "content": "Read the README."},
        {"role": "user", "content": "Then the tests."},
    ]
    stateless = client.responses.create(model=SCRIPTED, input=history, store=False)  # type: ignore[arg-type]
    edited = [
        {"role": "user", "content": "Read the LICENSE."},
        *history[1:],
        {"role": "user", "content": "Go on."},
    ]
    missed(compared(client, stateless.id, input=edited, store=False), "input_changed")
    resent = [
        *history,
        *[item.model_dump(exclude_none=True) for item in stateless.output],
        {"role": "user", "content": "Go on."},
    ]
    assert (
        compared(client, stateless.id, input=resent, store=False).prompt_cache_diagnostics.type == "cache_hit"
    )


def test_a_compacted_window_is_named_as_such(scripted_server: TetherServer) -> None:
    client = scripted_server.client()
    first = client.responses.create(model=SCRIPTED, input="Fix the failing test.")
    second = client.responses.create(model=SCRIPTED, input="And the linter.", previous_response_id=first.id)
    window = client.responses.compact(model=SCRIPTED, previous_response_id=second.id)
    items = [item.model_dump(exclude_none=True, warnings=False) for item in window.output]
    missed(
        compared(client, second.id, input=[*items, {"role": "user", "content": "Go on."}]),
        "context_compacted",
    )


def test_an_unknown_or_another_tenant_s_response_is_not_found_and_the_server_may_always_compare(
    tmp_path: Any,
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("alice sk-alice\nbob sk-bob\n")
    flags = ("--api-keys-file", str(keys), "--cache-diagnostics")
    with TetherServer(tmp_path / "tether.db", *flags, api_key="sk-default") as server:
        alice = openai.OpenAI(base_url=server.base_url, api_key="sk-alice", max_retries=0)
        bob = openai.OpenAI(base_url=server.base_url, api_key="sk-bob", max_retries=0)
        hers = alice.responses.create(model=SCRIPTED, input="Alice's task.")
        for who, comparison in ((bob, hers.id), (alice, "resp_unknown")):
            seen = compared(who, comparison, input="Hi.").prompt_cache_diagnostics
            assert seen.type == "comparison_response_not_found"
        with alice.responses.connect() as conn:  # over a WebSocket too, and a hit
            turn = run(conn, model=SCRIPTED, input="Go on.", previous_response_id=hers.id,
                       prompt_cache_options={"comparison_response_id": hers.id})  # fmt: skip
        assert turn.prompt_cache_diagnostics.type == "cache_hit"
        # `--cache-diagnostics`: a continuation that did not ask is compared with its parent.
        unasked = alice.responses.create(model=SCRIPTED, input="More.", previous_response_id=turn.id)
        assert unasked.prompt_cache_diagnostics is not None
        assert unasked.prompt_cache_diagnostics.type == "cache_hit"
        assert (
            unasked.prompt_cache_options is not None
            and unasked.prompt_cache_options.comparison_response_id is None
        )
        metrics = httpx.get(
            f"http://127.0.0.1:{server.port}/metrics", headers={"Authorization": "Bearer sk-alice"}
        )
        assert "tether_cache_misses_total" in metrics.text


@pytest.mark.local_model
def test_a_tool_added_on_the_local_model_misses_what_it_prefilled_again(local_server: TetherServer) -> None:
    client = local_server.client()
    settings: dict[str, Any] = {
        "model": LOCAL,
        "instructions": CONTEXT,
        "max_output_tokens": 8,
        "temperature": 0,
    }
    first = client.responses.create(tools=[TOOL], input="Read the README.", **settings)  # type: ignore[list-item]
    hit = compared(
        client, first.id, tools=[TOOL], input="Now the tests.", previous_response_id=first.id, **settings
    )
    assert hit.prompt_cache_diagnostics.type == "cache_hit"
    assert written(hit)[0] == first.usage.input_tokens + first.usage.output_tokens  # type: ignore[union-attr]
    changed = compared(client, first.id, tools=[TOOL, OTHER_TOOL], input="Now the tests.",
                       previous_response_id=first.id, **settings)  # fmt: skip
    missed(changed, "tools_changed")
    # The tools are in the system block: nearly the whole prompt was prefilled again.
    assert changed.prompt_cache_diagnostics.cache_missed_tokens > first.usage.input_tokens // 2  # type: ignore[union-attr]


def marked(text: str) -> dict[str, Any]:
    """A developer message that ends a reusable prefix (`prompt_cache_breakpoint`)."""
    part = {"type": "input_text", "text": text, "prompt_cache_breakpoint": {"mode": "explicit"}}
    return {"role": "developer", "content": [part]}


EXPLICIT: dict[str, Any] = {"prompt_cache_options": {"mode": "explicit"}}
DOCUMENT = "Chapter one. " * 60


def test_explicit_caching_keeps_the_marked_prefix_and_nothing_else(scripted_server: TetherServer) -> None:
    client = scripted_server.client()
    first = client.responses.create(
        model=SCRIPTED, input=[marked(DOCUMENT), {"role": "user", "content": "Summarise it."}], **EXPLICIT
    )
    found, wrote = written(first)
    assert 0 < wrote < first.usage.input_tokens  # type: ignore[union-attr]  # the document, not the question
    second = client.responses.create(model=SCRIPTED, input="And chapter two?", previous_response_id=first.id,
                                     **EXPLICIT)  # fmt: skip
    cached, _ = written(second)
    kept = found + wrote
    assert kept - 1 <= cached <= kept  # the marked prefix (in whole tokens), neither question nor answer
    stored = client.responses.input_items.list(first.id, order="asc").data[0]
    assert stored.content[0].prompt_cache_breakpoint is not None  # type: ignore[union-attr]
    # Explicit without a mark writes nothing: its continuation finds nothing of it.
    unmarked = client.responses.create(model=SCRIPTED, input="Chapter three. " * 60, **EXPLICIT)
    assert written(unmarked)[1] == 0
    after = client.responses.create(model=SCRIPTED, input="More.", previous_response_id=unmarked.id)
    assert written(after)[0] == 0


@pytest.mark.local_model
def test_explicit_caching_on_the_local_model_keeps_exactly_the_marked_prefix(
    local_server: TetherServer,
) -> None:
    client = local_server.client()
    settings: dict[str, Any] = {"model": LOCAL, "max_output_tokens": 8, "temperature": 0, **EXPLICIT}
    document = [marked(f"Document {uuid.uuid4()}. {DOCUMENT}"), {"role": "user", "content": "Summarise it."}]
    first = client.responses.create(input=document, **settings)
    _, wrote = written(first)
    assert 0 < wrote < first.usage.input_tokens  # type: ignore[union-attr]
    second = client.responses.create(input="And the end?", previous_response_id=first.id, **settings)
    # Exactly what the first turn found and wrote (the prefix to the document's end): neither
    # the question nor the answer.
    assert written(second)[0] == sum(written(first))
    unmarked = client.responses.create(
        input=f"Unmarked {uuid.uuid4()}. {DOCUMENT}", instructions=f"Session {uuid.uuid4()}.", **settings
    )
    assert written(unmarked)[1] == 0
    after = client.responses.create(input="More.", previous_response_id=unmarked.id,
                                    instructions=unmarked.instructions, **settings)  # fmt: skip
    assert written(after)[0] < 10  # at most the opening tokens every conversation shares
