"""`response.steer` (spec §4.3): the checks of its envelope and input, and its failure event (§7.6).

A steer carries only `type`, `previous_response_id` (the response to steer) and `input`: a
string, or a non-empty array of user messages, each with only `type` ("message"), `role` and
`content` (a string, or `input_text` / `input_image` / `input_file` parts). The generated SDK
union also lists tool outputs; the documentation forbids them, and so does Tether. Every
violation is answered with `response.steer.failed`, code `invalid_input`, never an `error` event,
and the input comes back as it was sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from tether.protocol.errors import ApiError
from tether.protocol.items import Message, parse_input

_FIELDS = frozenset({"type", "previous_response_id", "input"})
_MESSAGE_FIELDS = frozenset({"type", "role", "content"})
_PART_TYPES = frozenset({"input_text", "input_image", "input_file"})

# §7.6: why a steer was not committed (an open enum; these are the ones Tether sends).
FailureCode = Literal[
    "response_not_found",
    "invalid_input",
    "steering_not_supported",
    "too_many_pending_steers",
    "response_already_completed",
    "response_not_active",
    "successor_creation_failed",
]


@dataclass(frozen=True)
class SteerRequest:
    previous_response_id: str
    items: tuple[Message, ...]  # the steering input as user messages, in order


class SteerRejected(Exception):
    def __init__(self, code: FailureCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_steer(body: Mapping[str, Any]) -> SteerRequest:
    """The steer in `body` (a decoded `response.steer`); raises `SteerRejected` when invalid."""
    extra = sorted(set(body) - _FIELDS)
    if "stream_id" in extra:
        _invalid("A steer takes no 'stream_id': it goes to the lane of the response it steers.")
    if extra:
        _invalid(f"Unknown field '{extra[0]}': a steer has only 'previous_response_id' and 'input'.")
    target = body.get("previous_response_id")
    if not isinstance(target, str) or not target:
        _invalid("'previous_response_id' must be the id of the response to steer.")
    return SteerRequest(target, _steering(body.get("input")))


def not_supported() -> SteerRejected:
    return SteerRejected(
        "steering_not_supported",
        "Steering is not supported by this server's models yet: send the input with the next "
        "response.create once the response has ended.",
    )


def steer_failed(
    sequence_number: int,
    body: Mapping[str, Any],
    rejected: SteerRejected,
    steer_id: str | None = None,
    stream_id: str | None = None,
) -> dict[str, Any]:
    """`response.steer.failed` for the steer in `body`, its input returned as sent; `steer_id`
    is left out when the failure came before one was given."""
    target = body.get("previous_response_id")
    steer: dict[str, Any] = {"previous_response_id": target if isinstance(target, str) else ""}
    steer["input"] = body.get("input")
    if steer_id is not None:
        steer["id"] = steer_id
    event: dict[str, Any] = {
        "type": "response.steer.failed",
        "sequence_number": sequence_number,
        "steer": steer,
        "error": {"type": "invalid_request_error", "code": rejected.code, "message": rejected.message},
    }
    if stream_id is not None:
        event["stream_id"] = stream_id
    return event


def _steering(value: Any) -> tuple[Message, ...]:
    if isinstance(value, str):
        if not value:
            _invalid("'input' is empty: a steer adds text for the model to follow.")
        return _messages(value)
    if not isinstance(value, list) or not value:
        _invalid("'input' must be a string or a non-empty array of user messages.")
    for index, raw in enumerate(value):
        _check_message(raw, f"input[{index}]")
    return _messages(value)


def _check_message(raw: Any, path: str) -> None:
    if not isinstance(raw, Mapping):
        _invalid(f"'{path}' must be a user message.")
    extra = sorted(set(raw) - _MESSAGE_FIELDS)
    if extra:
        _invalid(f"'{path}' may have only 'type', 'role' and 'content', not '{extra[0]}'.")
    if raw.get("type", "message") != "message":
        _invalid(f"'{path}' is a {raw.get('type')!r}: a steer takes user messages only.")
    if raw.get("role") != "user":
        _invalid(f"'{path}.role' is {raw.get('role')!r}: a steer takes user messages only.")
    content = raw.get("content")
    if isinstance(content, list):
        for index, part in enumerate(content):
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind not in _PART_TYPES:
                _invalid(f"'{path}.content[{index}]' must be an input_text, input_image or input_file part.")
    elif not isinstance(content, str):
        _invalid(f"'{path}.content' must be a string or an array of content parts.")


def _messages(value: str | list[Any]) -> tuple[Message, ...]:
    try:
        items = parse_input(value)
    except ApiError as error:  # a part's own fields (a text that is not a string, ...)
        _invalid(error.message)
    return tuple(item for item in items if isinstance(item, Message))


def _invalid(message: str) -> NoReturn:
    raise SteerRejected("invalid_input", message)
