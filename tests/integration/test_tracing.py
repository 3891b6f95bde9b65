"""Traces: with the standard OTEL_* variables set, Tether sends its spans by OTLP/HTTP to a real
receiver the test starts (`tests/otlp_receiver.py`); the span tree of an HTTP turn, of a
WebSocket chain, and the `traceparent` an upstream engine receives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SCRIPTED
from tests.otlp_receiver import OtlpReceiver, Span
from tests.recording_proxy import Recorder
from tests.server_process import TetherServer
from tether.bench.servers import bench_engine

# The caller's trace, as a W3C traceparent: version, trace id, parent span id, sampled.
CALLER_TRACE, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
SERVER, CLIENT = 2, 3  # the protocol's SpanKind numbers


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # ms: export soon after a span ends
        monkeypatch.setenv("OTEL_SERVICE_NAME", "tether-test")
        yield receiver


def named(spans: list[Span], name: str) -> list[Span]:
    return [span for span in spans if span.name == name]


def children(spans: list[Span], parent: Span) -> set[str]:
    return {span.name for span in spans if span.parent_id == parent.span_id}


def test_an_http_turn_continues_the_caller_s_trace(receiver: OtlpReceiver, tmp_path: Path) -> None:
    with TetherServer(tmp_path / "tether.db") as server:
        traceparent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
        client = server.client(default_headers={"traceparent": traceparent})
        response = client.responses.create(model=SCRIPTED, input="Hi.", store=True)
        spans = receiver.wait_for(lambda spans: bool(named(spans, "HTTP POST")))
    [http] = named(spans, "HTTP POST")
    assert (http.trace_id, http.parent_id, http.kind) == (CALLER_TRACE, CALLER_SPAN, SERVER)
    assert http.attributes["http.response.status_code"] == 200
    [turn] = named(spans, "response")
    assert turn.parent_id == http.span_id and turn.attributes["tether.response.id"] == response.id
    assert turn.attributes["tether.response.status"] == "completed"
    assert children(spans, turn) == {"chain", "render", f"chat {SCRIPTED}", "store"}
    [chat] = named(spans, f"chat {SCRIPTED}")
    assert chat.kind == CLIENT and response.usage is not None
    assert (chat.attributes["gen_ai.usage.input_tokens"], chat.attributes["gen_ai.usage.output_tokens"]) == (
        response.usage.input_tokens,
        response.usage.output_tokens,
    )
    assert (
        chat.attributes["gen_ai.request.model"] == SCRIPTED
        and chat.attributes["gen_ai.response.id"] == response.id
    )


def test_each_turn_of_a_websocket_is_a_trace_linked_to_the_connection(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    with TetherServer(tmp_path / "tether.db") as server:
        ids = []
        with server.client().responses.connect() as conn:
            previous = None
            for text in ("Hi.", "And again."):
                conn.response.create(model=SCRIPTED, input=text, store=False, previous_response_id=previous)
                done = next(e for e in conn if e.type == "response.completed").response
                ids.append(previous := done.id)
        spans = receiver.wait_for(
            lambda spans: bool(named(spans, "websocket")) and len(named(spans, "response")) == 2
        )
    [connection] = named(spans, "websocket")
    assert connection.kind == SERVER and connection.parent_id == ""
    turns = named(spans, "response")
    assert [turn.attributes["tether.response.id"] for turn in turns] == ids
    for turn in turns:  # a root of its own trace, linked to the connection's span
        assert turn.parent_id == "" and turn.trace_id != connection.trace_id
        assert turn.links == ((connection.trace_id, connection.span_id),)
        # A create can arrive while its lane still settles the turn before (`queue`, tested below).
        assert children(spans, turn) - {"queue"} == {"chain", "render", f"chat {SCRIPTED}"}


def test_a_create_queued_behind_its_lane_shows_its_wait(receiver: OtlpReceiver, tmp_path: Path) -> None:
    """Two creates sent at once on one lane: the second waits for the first to settle, and its
    response's span begins when it arrived, with that wait as its `queue` child."""
    with TetherServer(tmp_path / "tether.db", "--scripted-decode-us", "20000") as server:
        with server.client().responses.connect() as conn:
            for text in ("First.", "Second."):
                conn.response.create(model=SCRIPTED, input=text, store=False)
            ended = 0
            for event in conn:
                ended += event.type == "response.completed"
                if ended == 2:
                    break
        spans = receiver.wait_for(lambda spans: len(named(spans, "response")) == 2)
    first, second = sorted(named(spans, "response"), key=lambda span: span.end_ns)
    [queue] = [span for span in spans if span.parent_id == second.span_id and span.name == "queue"]
    assert queue.start_ns == second.start_ns < first.end_ns <= queue.end_ns  # it waited for the first
    [chain] = [span for span in spans if span.parent_id == second.span_id and span.name == "chain"]
    assert queue.end_ns <= chain.start_ns


def upstream_turn(tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """One HTTP turn through an upstream Tether: its model, and the headers its engine received."""
    with (
        bench_engine(tmp_path / "engine.log") as engine,
        Recorder(engine, tmp_path) as recorder,
        TetherServer(tmp_path / "tether.db", "--upstream", recorder.base_url, model=None) as server,
    ):
        [model] = server.client().models.list().data
        server.client().responses.create(model=model.id, input="Hi.", store=False)
    [sent] = recorder.completions()
    return model.id, sent


def test_an_upstream_engine_gets_the_generation_s_traceparent(receiver: OtlpReceiver, tmp_path: Path) -> None:
    model, sent = upstream_turn(tmp_path)
    [chat] = named(receiver.wait_for(lambda spans: bool(named(spans, f"chat {model}"))), f"chat {model}")
    assert sent["traceparent"].startswith(f"00-{chat.trace_id}-{chat.span_id}-")  # then its flags


def test_a_turn_not_sampled_makes_no_spans_and_tells_the_engine_so(
    receiver: OtlpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    _, sent = upstream_turn(tmp_path)
    flags = int(sent["traceparent"].rsplit("-", 1)[1], 16)
    assert flags & 1 == 0  # not sampled: the engine need not record it either
    assert receiver.spans == []  # the server has stopped, and sent what it had
