"""Whether an event is exactly what the official SDK declares: it validates as the type its
`type` names, required fields and all, and carries no key the SDK's types do not know, at any
depth (the SDK's models keep unknown keys aside rather than refuse them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

_EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
# D4: the lane a WebSocket event belongs to, Tether's own addition on that transport.
_TETHER_KEYS = frozenset({"stream_id"})
# The Response echoes these as OpenAI's API does (spec §10.1) and the Open Responses schema
# requires, though the SDK's `Response` does not declare them.
_RESPONSE_ECHOES = frozenset({"store", "presence_penalty", "frequency_penalty"})


def unknown_keys(event: dict[str, Any]) -> list[str]:
    """The paths of the keys of `event` the SDK does not declare; raises when it is invalid."""
    parsed = _EVENTS.validate_python({k: v for k, v in event.items() if k not in _TETHER_KEYS})
    return list(_extras(parsed, event["type"]))


def _extras(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, BaseModel):
        allowed = _RESPONSE_ECHOES if isinstance(value, Response) else frozenset()
        for key in (value.model_extra or {}).keys() - allowed:
            yield f"{path}.{key}"
        for name in type(value).model_fields:
            yield from _extras(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for i, entry in enumerate(value):
            yield from _extras(entry, f"{path}[{i}]")
