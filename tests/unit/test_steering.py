"""`response.steer`'s envelope and input (spec §4.3) and its failure event (§7.6)."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.responses import ResponseSteerFailedEvent

from tether.protocol.items import AttachmentPart, TextPart
from tether.protocol.steering import SteerRejected, parse_steer, steer_failed

TARGET = "resp_1"


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
    event = steer_failed(4, body, SteerRejected("invalid_input", "no"), stream_id="lane-a")
    parsed = ResponseSteerFailedEvent.model_validate(event)
    assert parsed.sequence_number == 4 and parsed.stream_id == "lane-a"
    assert parsed.error.code == "invalid_input" and parsed.error.type == "invalid_request_error"
    assert parsed.steer.previous_response_id == TARGET and parsed.steer.id is None
    assert event["steer"]["input"] == body["input"]
    assert (
        steer_failed(0, body, SteerRejected("response_not_found", "no"), steer_id="steer_1")["steer"]["id"]
        == "steer_1"
    )
