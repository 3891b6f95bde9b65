"""The event state machine (§5.2, §5.4): order, numbering, and refusal of wrong moves."""

from __future__ import annotations

import pytest

from tether.protocol.errors import backend_failed
from tether.protocol.events import EmitterMisuse, ResponseEvents
from tether.protocol.request import parse_create
from tether.protocol.response import Usage, response_object

USAGE = Usage(input_tokens=9, cached_tokens=0, output_tokens=3)


def new_events(stream_id: str | None = None) -> ResponseEvents:
    request = parse_create({"model": "m", "input": "hi"}, "http")
    body = response_object(request, response_id="resp_1", model="m", created_at=1)
    return ResponseEvents(body, stream_id=stream_id)


def test_a_text_answer_has_the_documented_sequence() -> None:
    """§5.5 A: created, in_progress, item/part added, deltas, dones, completed; seq from 0."""
    events = new_events()
    out = [events.created(), events.in_progress(), *events.open_message("msg_1")]
    out += [events.text_delta("Hel"), events.text_delta("lo!"), *events.close_message()]
    out.append(events.completed(USAGE, completed_at=2))
    assert [e["type"] for e in out] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    assert [e["sequence_number"] for e in out] == list(range(10))
    final = out[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Hello!"
    assert final["usage"]["total_tokens"] == 12
    assert out[0]["response"]["output"] == [] and out[0]["response"]["usage"] is None
    assert "stream_id" not in out[0]


def test_stream_id_is_on_every_event_of_a_named_lane() -> None:
    events = new_events(stream_id="main")
    out = [events.created(), events.in_progress(), *events.open_function_call("fc_1", "call_1", "f")]
    out += [*events.arguments_delta("{}"), *events.close_function_call()]
    out.append(events.completed(USAGE, completed_at=2))
    assert all(e["stream_id"] == "main" for e in out)
    assert out[-1]["response"]["output"][0]["arguments"] == "{}"


def test_a_failure_marks_the_open_item_incomplete_without_done_events() -> None:
    """§5.5 F."""
    events = new_events()
    events.created(), events.in_progress(), events.open_message("msg_1"), events.text_delta("Part")
    failed = events.failed(backend_failed(), USAGE)
    item = failed["response"]["output"][0]
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {
        "code": "server_error",
        "message": "The model backend stopped responding.",
    }
    assert item["status"] == "incomplete" and item["content"][0]["text"] == "Part"


@pytest.mark.parametrize(
    "wrong_move",
    [
        lambda e: e.in_progress(),  # before created
        lambda e: e.text_delta("x"),  # no open message
        lambda e: (e.created(), e.open_message("m")),  # before in_progress
        lambda e: (e.created(), e.in_progress(), e.open_message("m"), e.open_message("n")),
        lambda e: (e.created(), e.completed(USAGE, 1), e.completed(USAGE, 1)),
        lambda e: (e.created(), e.in_progress(), e.open_message("m"), e.arguments_delta("{")),
    ],
)
def test_out_of_order_calls_are_refused(wrong_move: object) -> None:
    with pytest.raises(EmitterMisuse):
        wrong_move(new_events())  # type: ignore[operator]
