"""`response.steer`'s envelope and input (spec §4.3) and its failure event (§7.6)."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.responses import (
    ResponseSteerAcceptedEvent,
    ResponseSteerFailedEvent,
    ResponseSteerPendingEvent,
)

from tether.protocol import steering
from tether.protocol.events import ResponseEvents
from tether.protocol.items import AttachmentPart, FunctionCall, Message, TextPart
from tether.protocol.request import parse_create
from tether.protocol.response import Usage, response_object
from tether.protocol.steering import SteerRejected, failed, parse_steer

TARGET = "resp_1"


def response_events(stream_id: str | None = None) -> ResponseEvents:
    request = parse_create({"model": "m", "input": "hi"}, "ws")
    return ResponseEvents(response_object(request, response_id=TARGET, model="m", created_at=1), stream_id)


def steer(**fields: Any) -> dict[str, Any]:
    return {"type": "response.steer", "previous_response_id": TARGET, **fields}


def test_a_string_is_one_user_message() -> None:
    request = parse_steer(steer(input="Keep it to two weeks."))
    assert request.previous_response_id == TARGET
    [message] = request.items
    assert message.role == "user" and message.content == (TextPart("input_text", "Keep it to two weeks."),)


def test_user_messages_keep_their_order_and_parts() -> None:
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
    request = parse_steer(
        steer(
            input=[
                {"role": "user", "content": "First."},
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Then."}, image],
                },
            ]
        )
    )
    assert [message.content[0] for message in request.items] == [
        TextPart("input_text", "First."),
        TextPart("input_text", "Then."),
    ]
    assert isinstance(request.items[1].content[1], AttachmentPart)


@pytest.mark.parametrize(
    "body",
    [
        steer(input="x", stream_id="lane"),  # the target decides the lane
        steer(input="x", model="m"),  # an extra field
        {"type": "response.steer", "input": "x"},  # no target
        steer(previous_response_id="", input="x"),
        steer(previous_response_id=7, input="x"),
        steer(),  # no input
        steer(input=""),
        steer(input=[]),  # an empty array
        steer(input={"role": "user", "content": "x"}),  # not an array
        steer(input=[{"role": "assistant", "content": "x"}]),  # a wrong role
        steer(input=[{"role": "developer", "content": "x"}]),
        steer(input=[{"type": "function_call_output", "call_id": "c", "output": "x"}]),  # a tool output
        steer(input=[{"role": "user", "content": "x", "id": "msg_1"}]),  # a field messages may not carry
        steer(input=[{"type": "reasoning", "role": "user", "content": "x"}]),
        steer(input=[{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]),  # a wrong part
        steer(input=[{"role": "user", "content": [{"type": "input_text", "text": 3}]}]),  # a part's field
        steer(input=[{"role": "user", "content": 3}]),
        steer(input=["x"]),
    ],
)
def test_every_violation_is_invalid_input(body: dict[str, Any]) -> None:
    with pytest.raises(SteerRejected) as rejected:
        parse_steer(body)
    assert rejected.value.code == "invalid_input" and rejected.value.message


def test_the_failure_returns_the_input_as_sent_and_parses_with_the_sdk() -> None:
    body = steer(input=[{"type": "message", "role": "user", "content": "Keep it short."}], extra=1)
    events = response_events(stream_id="lane-a")
    event = events.aside(failed(body, SteerRejected("invalid_input", "no")))
    parsed = ResponseSteerFailedEvent.model_validate(event)
    assert parsed.sequence_number == 0 and parsed.stream_id == "lane-a"
    assert parsed.error.code == "invalid_input" and parsed.error.type == "invalid_request_error"
    assert parsed.steer.previous_response_id == TARGET and parsed.steer.id is None
    assert event["steer"]["input"] == body["input"]
    with_id = failed(body, SteerRejected("successor_creation_failed", "no"), steer_id="steer_1")
    assert with_id["steer"]["id"] == "steer_1"


def test_the_replies_take_the_response_s_next_numbers_and_parse_with_the_sdk() -> None:
    """§5.2: a reply about a response is one of its events; `pending` follows its terminal one."""
    events = response_events()
    events.created()
    accepted = ResponseSteerAcceptedEvent.model_validate(events.aside(steering.accepted("steer_1", TARGET)))
    assert accepted.sequence_number == 1 and accepted.steer.id == "steer_1"
    events.in_progress()
    events.completed(Usage(1, 0, 1), 0)
    call = FunctionCall("call_1", "get_weather", "{}")
    pending = ResponseSteerPendingEvent.model_validate(
        events.aside(
            steering.pending("steer_1", TARGET, (Message("assistant", (TextPart("output_text", "x"),)), call))
        )
    )
    assert pending.sequence_number == 4 and pending.reason == "waiting_for_required_input"
    assert [stub.model_dump() for stub in pending.required_input] == [
        {"type": "function_call_output", "call_id": "call_1", "name": "get_weather"}
    ]
