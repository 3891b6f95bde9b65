"""Stream events of one response (spec §5), built in order and numbered as they are built (D8).

`ResponseEvents` is a state machine over the response (CREATED → IN_PROGRESS → one terminal
state) and over its one open output item. A call out of order is our bug, not the client's, and
raises `EmitterMisuse` naming the state and the call, so a wrong sequence can never reach the wire.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Callable
from typing import Any

import orjson

from tether.protocol.errors import ApiError
from tether.protocol.items import FunctionCall, Item, Message, Reasoning, TextPart
from tether.protocol.prompt_cache import Diagnostics
from tether.protocol.response import Usage

Event = dict[str, Any]


def sse_frame(event: Event) -> bytes:
    """§10.3: `event: <type>`, one line of JSON, a blank line."""
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def sequence_of(event: Event) -> int:
    return int(event["sequence_number"])


def numbered(event: Event, sequence_number: int, stream_id: str | None = None) -> Event:
    """`event`, built without a number, with one (after its `type`, as every event has it)."""
    fields = {key: value for key, value in event.items() if key != "type"}
    stamped: Event = {"type": event["type"], "sequence_number": sequence_number, **fields}
    if stream_id is not None:
        stamped["stream_id"] = stream_id
    return stamped


def abandoned(
    response: dict[str, Any], error: ApiError, sequence_number: int
) -> tuple[dict[str, Any], Event]:
    """The end of a response whose process died: the Response as last stored, `failed` with
    `error`, each item still open marked `incomplete` (§5.5 F), and its `response.failed` event."""
    ended = copy.deepcopy(response)
    ended["status"] = "failed"
    ended["error"] = error.response_error()
    for item in ended["output"]:
        if item.get("status") == "in_progress":
            item["status"] = "incomplete"
    event = {"type": "response.failed", "sequence_number": sequence_number, "response": copy.deepcopy(ended)}
    return ended, event


def custom_input(arguments: str) -> str:
    """A custom tool's raw input from the arguments the model wrote for it (`{"input": ...}`,
    `tools.CUSTOM_INPUT`); arguments of another shape are the input as they are."""
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    return value["input"] if isinstance(value, dict) and isinstance(value.get("input"), str) else arguments


def _set_status(item: dict[str, Any], status: str) -> None:
    """The item's status, if it is a kind that has one (a custom tool's call has none)."""
    if "status" in item:
        item["status"] = status


class EmitterMisuse(AssertionError):
    """An event was requested in a state that forbids it (a Tether bug)."""


class _Phase(enum.Enum):
    NEW = "new"
    CREATED = "created"
    IN_PROGRESS = "in_progress"
    TERMINAL = "terminal"


class ResponseEvents:
    """Builds the events of one response and keeps its Response object current. `seal`, when
    the request included `reasoning.encrypted_content`, turns a reasoning item's thinking into
    the blob it carries."""

    def __init__(
        self, response: dict[str, Any], stream_id: str | None = None, seal: Callable[[str], str] | None = None
    ) -> None:
        self.response = response
        self._stream_id = stream_id
        self._seal = seal
        self._sequence = 0
        self._phase = _Phase.NEW
        self._open: dict[str, Any] | None = None  # the output item being streamed
        self._text: list[str] = []
        self._items: list[Item] = []  # the output as typed items, each once it is closed

    @property
    def output(self) -> list[dict[str, Any]]:
        return self.response["output"]  # type: ignore[no-any-return]

    @property
    def output_items(self) -> tuple[Item, ...]:
        """The output items closed so far (at a terminal event: all of them), typed."""
        return tuple(self._items)

    @property
    def open_item_type(self) -> str | None:
        """`message`, `function_call` or `custom_tool_call` while one is being streamed, else None."""
        return None if self._open is None else str(self._open["type"])

    @property
    def ended(self) -> bool:
        """Its terminal event has been built (it may not have gone out yet)."""
        return self._phase is _Phase.TERMINAL

    def snapshot(self) -> dict[str, Any]:
        """A copy of the Response as it stands, the open item showing what it holds so far."""
        response = copy.deepcopy(self.response)
        if self._open is not None:
            self._fill(response["output"][-1])
        return response

    # --- lifecycle --------------------------------------------------------------------------------

    def created(self) -> Event:
        self._expect("created", _Phase.NEW)
        self._phase = _Phase.CREATED
        return self._lifecycle("response.created")

    def in_progress(self) -> Event:
        self._expect("in_progress", _Phase.CREATED)
        self._phase = _Phase.IN_PROGRESS
        self.response["status"] = "in_progress"
        return self._lifecycle("response.in_progress")

    def completed(self, usage: Usage, completed_at: int) -> Event:
        self._terminal("completed", usage)
        self.response["completed_at"] = completed_at
        return self._lifecycle("response.completed")

    def incomplete(self, reason: str, usage: Usage) -> Event:
        self._terminal("incomplete", usage)
        self.response["incomplete_details"] = {"reason": reason}
        return self._lifecycle("response.incomplete")

    def failed(self, error: ApiError, usage: Usage) -> Event:
        self._terminal("failed", usage)
        self.response["error"] = error.response_error()
        return self._lifecycle("response.failed")

    def superseded(self, stored: dict[str, Any]) -> Event:
        """The terminal event just built, replaced by `response.failed` carrying the Response the
        store holds (another process ended it first): same sequence number, and the Response
        this emitter keeps becomes that one."""
        if self._phase is not _Phase.TERMINAL:
            raise EmitterMisuse(f"superseded needs phase terminal, the response is {self._phase.value}")
        self.response = copy.deepcopy(stored)
        self._sequence -= 1
        return self._lifecycle("response.failed")

    def cancelled(self, usage: Usage) -> None:
        """A background response cancelled through the API: the stream just ends (§6.2)."""
        self._terminal("cancelled", usage)

    def diagnosed(self, diagnostics: Diagnostics) -> None:
        """`prompt_cache_diagnostics`, on the Response its terminal event carries."""
        self.response["prompt_cache_diagnostics"] = diagnostics.to_wire()

    def aside(self, event: Event) -> Event:
        """`event`, built elsewhere, as one of this response's (a steer's reply, §5.2): its next
        number and its lane, in any phase (`response.steer.pending` follows the terminal event)."""
        self._sequence += 1
        return numbered(event, self._sequence - 1, self._stream_id)

    # --- output items -----------------------------------------------------------------------------

    def open_message(self, item_id: str) -> list[Event]:
        item = {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant",
                "content": []}  # fmt: skip
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        added = self._open_item(item)
        self._text = []
        return [added, self._item_event("response.content_part.added", content_index=0, part=part)]

    def text_delta(self, delta: str) -> Event:
        self._expect_open("text_delta", "message")
        self._text.append(delta)
        return self._item_event("response.output_text.delta", content_index=0, delta=delta, logprobs=[])

    def close_message(self, status: str = "completed") -> list[Event]:
        item = self._expect_open("close_message", "message")
        text = "".join(self._text)
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        events = [
            self._item_event("response.output_text.done", content_index=0, text=text, logprobs=[]),
            self._item_event("response.content_part.done", content_index=0, part=part),
        ]
        item["content"] = [part]
        return [*events, self._close_item(status)]

    def close_open(self, status: str) -> list[Event]:
        """Close whatever item is open (none: no events)."""
        if self._open is None:
            return []
        if self._open["type"] == "message":
            return self.close_message(status)
        if self._open["type"] == "reasoning":
            return self.close_reasoning(status)
        return self.close_function_call(status)

    def open_reasoning(self, item_id: str) -> list[Event]:
        """A `reasoning` item: the model's thinking, streamed as its `reasoning_text` content."""
        self._text = []
        return [self._open_item({"id": item_id, "type": "reasoning", "summary": [], "content": [],
                                 "status": "in_progress"})]  # fmt: skip

    def reasoning_delta(self, delta: str) -> Event:
        self._expect_open("reasoning_delta", "reasoning")
        self._text.append(delta)
        return self._item_event("response.reasoning_text.delta", content_index=0, delta=delta)

    def close_reasoning(self, status: str = "completed") -> list[Event]:
        item = self._expect_open("close_reasoning", "reasoning")
        self._fill(item)
        text = item["content"][0]["text"]
        done = self._item_event("response.reasoning_text.done", content_index=0, text=text)
        return [done, self._close_item(status)]

    def open_function_call(
        self, item_id: str, call_id: str, name: str, custom: bool = False, namespace: str | None = None
    ) -> list[Event]:
        """A function call, or a custom tool's (`custom`): the model writes its input as the
        arguments `{"input": ...}`, which are held, and its `input` streams once they are whole.
        `namespace`: the namespace tool the function is in."""
        item = FunctionCall(call_id, name, "", item_id, "in_progress", custom, namespace).to_wire()
        self._text = []
        return [self._open_item(item)]

    def arguments_delta(self, delta: str) -> list[Event]:
        item = self._expect_open("arguments_delta", "function_call", "custom_tool_call")
        self._text.append(delta)
        if item["type"] == "custom_tool_call":
            return []
        return [self._item_event("response.function_call_arguments.delta", delta=delta)]

    def close_function_call(self, status: str = "completed") -> list[Event]:
        item = self._expect_open("close_function_call", "function_call", "custom_tool_call")
        self._fill(item)
        if item["type"] == "custom_tool_call":
            text = item["input"]
            delta = [self._item_event("response.custom_tool_call_input.delta", delta=text)] if text else []
            done = self._item_event("response.custom_tool_call_input.done", input=text)
            return [*delta, done, self._close_item(status)]
        done = self._item_event("response.function_call_arguments.done", arguments=item["arguments"])
        return [done, self._close_item(status)]

    # --- helpers ----------------------------------------------------------------------------------

    def _open_item(self, item: dict[str, Any]) -> Event:
        self._expect("open an output item", _Phase.IN_PROGRESS)
        if self._open is not None:
            raise EmitterMisuse(f"cannot open a {item['type']} while a {self._open['type']} is open")
        self._open = item
        self.output.append(item)
        return self._event(
            "response.output_item.added",
            output_index=len(self.output) - 1,
            item=copy.deepcopy(item),
        )

    def _close_item(self, status: str) -> Event:
        assert self._open is not None
        _set_status(self._open, status)
        self._items.append(self._typed(self._open))
        event = self._event(
            "response.output_item.done",
            output_index=len(self.output) - 1,
            item=copy.deepcopy(self._open),
        )
        self._open = None
        return event

    def _terminal(self, status: str, usage: Usage) -> None:
        if self._phase not in (_Phase.CREATED, _Phase.IN_PROGRESS):
            raise EmitterMisuse(f"cannot end the response as {status} in phase {self._phase.value}")
        if self._open is not None:
            # §5.5 F: an item left open by a failure or interruption is listed as incomplete,
            # without its .done events.
            _set_status(self._open, "incomplete")
            self._fill(self._open)
            self._items.append(self._typed(self._open))
            self._open = None
        self._phase = _Phase.TERMINAL
        self.response["status"] = status
        self.response["usage"] = usage.to_wire(self.response["prompt_cache_options"]["ttl"])

    def _fill(self, item: dict[str, Any]) -> None:
        """Put the streamed text into the open item (or its copy)."""
        text = "".join(self._text)
        if item["type"] == "message":
            item["content"] = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        elif item["type"] == "custom_tool_call":
            item["input"] = custom_input(text)
        elif item["type"] == "reasoning":
            item["content"] = [{"type": "reasoning_text", "text": text}]
            if self._seal is not None:
                item["encrypted_content"] = self._seal(text)
        else:
            item["arguments"] = text

    def _typed(self, item: dict[str, Any]) -> Item:
        """The typed form of a filled output item."""
        if item["type"] == "reasoning":
            fields = tuple(
                (key, copy.deepcopy(value)) for key, value in item.items() if key not in ("type", "id")
            )
            return Reasoning(item["content"][0]["text"], fields, item["id"])
        if item["type"] == "message":
            part = TextPart("output_text", item["content"][0]["text"])
            return Message(role="assistant", content=(part,), id=item["id"], status=item["status"])
        custom = item["type"] == "custom_tool_call"
        arguments = item["input"] if custom else item["arguments"]
        return FunctionCall(item["call_id"], item["name"], arguments, item["id"], item.get("status"), custom,
                            item.get("namespace"))  # fmt: skip

    def _item_event(self, kind: str, **fields: Any) -> Event:
        assert self._open is not None
        return self._event(kind, item_id=self._open["id"], output_index=len(self.output) - 1, **fields)

    def _lifecycle(self, kind: str) -> Event:
        return self._event(kind, response=copy.deepcopy(self.response))

    def _event(self, kind: str, **fields: Any) -> Event:
        event: Event = {"type": kind, "sequence_number": self._sequence, **fields}
        if self._stream_id is not None:
            event["stream_id"] = self._stream_id
        self._sequence += 1
        return event

    def _expect(self, call: str, phase: _Phase) -> None:
        if self._phase is not phase:
            raise EmitterMisuse(f"{call} needs phase {phase.value}, the response is {self._phase.value}")

    def _expect_open(self, call: str, *item_types: str) -> dict[str, Any]:
        if self._open is None or self._open["type"] not in item_types:
            open_type = self._open["type"] if self._open else "nothing"
            raise EmitterMisuse(f"{call} needs an open {' or '.join(item_types)}, {open_type} is open")
        return self._open
