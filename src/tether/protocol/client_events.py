"""Client events of WebSocket mode (spec §4, §3.6), decoded from a text frame.

`decode` makes the checks of phase 1 of §4.1.2 that need no connection state — the frame is a
JSON object, its `type` is a string and one Tether knows — and raises the `ApiError` of the
first that fails. What needs the connection's state (its cap, its lanes, its queue) is the
session's; the body of a create is parsed only when it starts (phase 2, `request.parse_create`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson

from tether.protocol import errors

# §9: a named lane's `stream_id`.
STREAM_ID = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
LaneKey = str | None  # a lane: its `stream_id`, or None for the default lane (D4)


@dataclass(frozen=True)
class Create:
    """`response.create`: its body as sent, the size of its frame in bytes, and when it arrived
    (the connection's loop time, once its session has queued it: how long it waited is traced)."""

    body: dict[str, Any]
    size: int
    received_at: float = field(default=0.0, compare=False)  # the same create, whenever it came

    @property
    def stream_id(self) -> object:
        """The `stream_id` as sent (None: the default lane)."""
        return self.body.get("stream_id")

    @cached_property
    def lane(self) -> LaneKey:
        """The named lane it asks for, when its `stream_id` is a valid one; else None."""
        stream_id = self.stream_id
        return stream_id if isinstance(stream_id, str) and STREAM_ID.match(stream_id) else None

    @property
    def has_valid_lane(self) -> bool:
        return self.stream_id is None or self.lane is not None


@dataclass(frozen=True)
class Steer:
    """`response.steer` (§4.3): its body as sent, and the size of its frame in bytes."""

    body: dict[str, Any]
    size: int


ClientEvent = Create | Steer


def decode(text: str) -> ClientEvent:
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise errors.invalid_json(str(exc)) from None
    if not isinstance(event, dict):
        raise errors.invalid_json("expected a JSON object")
    kind = event.get("type")
    if not isinstance(kind, str):
        raise errors.missing_event_type()
    if kind == "response.create":
        return Create(event, utf8_size(text))
    if kind == "response.steer":
        return Steer(event, utf8_size(text))
    raise errors.unknown_event_type(kind)


def utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())
