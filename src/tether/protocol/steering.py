"""`response.steer` (spec §4.3): the checks of its envelope and input, and its failure event (§7.6).

A steer carries only `type`, `previous_response_id` (the response to steer) and `input`: a
string, or a non-empty array of user messages, each with only `type` ("message"), `role` and
`content` (a string, or `input_text` / `input_image` / `input_file` parts). The generated SDK
union also lists tool outputs; the documentation forbids them, and so does Tether. Every
violation is answered with `response.steer.failed`, code `invalid_input`, never an `error` event,
and the input comes back as it was sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from tether.protocol.errors import ApiError
from tether.protocol.items import FunctionCall, Item, Message, parse_input
from tether.protocol.request import CreateRequest

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


def not_supported(response_id: str) -> SteerRejected:
    return SteerRejected(
        "steering_not_supported",
        f"Response '{response_id}' asked for automatic compaction ('context_management'), and such "
        "a response cannot be steered; send the input with the next response.create.",
    )


def not_found(response_id: str) -> SteerRejected:
    return SteerRejected(
        "response_not_found",
        f"No response with id '{response_id}' can be steered on this connection: a steer names a "
        "response this connection created, after its response.created.",
    )


def not_active(response_id: str) -> SteerRejected:
    return SteerRejected(
        "response_not_active",
        f"Response '{response_id}' failed or was cancelled: there is nothing to steer.",
    )


def already_completed(response_id: str) -> SteerRejected:
    return SteerRejected(
        "response_already_completed",
        f"Response '{response_id}' has ended and has already been continued; steer the response "
        "that continues it.",
    )


def too_many(response_id: str, limit: int) -> SteerRejected:
    return SteerRejected(
        "too_many_pending_steers",
        f"Response '{response_id}' already has {limit} steers waiting, its maximum.",
    )


def too_many_bytes(queued: int, size: int, limit: int) -> SteerRejected:
    return SteerRejected(
        "too_many_pending_steers",
        f"The steers waiting on this connection hold {queued} bytes; this one ({size} bytes) would "
        f"pass the maximum of {limit}.",
    )


def successor_failed(message: str) -> SteerRejected:
    return SteerRejected("successor_creation_failed", f"Could not start the successor response: {message}")


# The events below are built without `sequence_number` (and `stream_id`): one about a response
# takes the next number of that response (§5.2), one about no response the connection's own.


def accepted(steer_id: str, target: str) -> dict[str, Any]:
    """`response.steer.accepted`: the steer is queued for `target`, not yet applied (§8.6)."""
    return {"type": "response.steer.accepted", "steer": {"id": steer_id, "previous_response_id": target}}


def pending(steer_id: str, target: str, output: Sequence[Item]) -> dict[str, Any]:
    """`response.steer.pending`: `target` ended waiting for the output of the calls in its
    `output`; the steer goes in front of the client's create that brings them (§8.6 step 5)."""
    return {
        "type": "response.steer.pending",
        "steer": {"id": steer_id, "previous_response_id": target},
        "reason": "waiting_for_required_input",
        "required_input": required_input(output),
    }


def failed(body: Mapping[str, Any], rejected: SteerRejected, steer_id: str | None = None) -> dict[str, Any]:
    """`response.steer.failed` for the steer in `body`, its input returned as sent; `steer_id`
    is left out when the failure came before one was given."""
    target = body.get("previous_response_id")
    steer: dict[str, Any] = {"previous_response_id": target if isinstance(target, str) else ""}
    steer["input"] = body.get("input")
    if steer_id is not None:
        steer["id"] = steer_id
    return {
        "type": "response.steer.failed",
        "steer": steer,
        "error": {"type": "invalid_request_error", "code": rejected.code, "message": rejected.message},
    }


def successor(target: CreateRequest, target_id: str, steers: Sequence[SteerRequest]) -> CreateRequest:
    """The create a steered response's successor makes (§8.6 step 4): the target's settings, the
    steers' input in order, and the target as its parent."""
    update = {"input": _items(steers), "previous_response_id": target_id, "generate": True}
    return target.model_copy(update=update)


def steers_first(create: CreateRequest, steers: Sequence[SteerRequest]) -> CreateRequest:
    """The client's create that brings the tool output a target waited for, with the steers
    queued for that target in front of its input (§8.6 step 5)."""
    return create.model_copy(update={"input": _items(steers) + create.input})


def _items(steers: Sequence[SteerRequest]) -> tuple[Item, ...]:
    return tuple(item for steer in steers for item in steer.items)


def required_input(output: Sequence[Item]) -> list[dict[str, Any]]:
    """The stubs of what a response that ended on client tool calls waits for (§8.6 step 5)."""
    return [
        {"type": "custom_tool_call_output", "call_id": item.call_id}
        if item.custom
        else {"type": "function_call_output", "call_id": item.call_id, "name": item.name}
        for item in output
        if isinstance(item, FunctionCall)
    ]


def waits_for_input(output: Sequence[Item]) -> bool:
    return bool(required_input(output))


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
