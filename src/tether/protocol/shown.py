"""What a person is shown of stored wire objects (the inspector's pages): a response's summary
and each item as kind, who and text. The one place outside the rest of `protocol` that reads a
stored Response's fields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tether.protocol.errors import ApiError
from tether.protocol.items import (
    Compaction,
    FunctionCall,
    FunctionCallOutput,
    ItemReference,
    Message,
    Reasoning,
    item_type,
    parse_item,
)


@dataclass(frozen=True)
class ShownItem:
    kind: str  # its `type`
    who: str  # a message's role, a call's tool and call id
    text: str


@dataclass(frozen=True)
class ShownResponse:
    id: str
    status: str
    model: str
    created_at: int
    previous_response_id: str | None
    input_tokens: int | None  # None: no usage (it has not ended)
    cached_tokens: int | None
    output_tokens: int | None
    error: str | None  # a failed one's message
    output: tuple[ShownItem, ...]


def shown_item(raw: Any) -> ShownItem:
    try:
        item = parse_item(raw, "item")
    except ApiError:  # stored long ago, or by another version: shown as it is
        return ShownItem(str(raw.get("type", "?")) if isinstance(raw, Mapping) else "?", "", repr(raw))
    kind = item_type(item)
    if isinstance(item, Message):
        return ShownItem(kind, item.role, item.text)
    if isinstance(item, FunctionCall):
        return ShownItem(kind, f"{item.name} ({item.call_id})", item.arguments)
    if isinstance(item, FunctionCallOutput):
        return ShownItem(kind, item.call_id, item.text)
    if isinstance(item, Reasoning):
        return ShownItem(kind, "", item.text)
    if isinstance(item, ItemReference):
        return ShownItem(kind, "", item.id)
    if isinstance(item, Compaction):
        return ShownItem(kind, "", f"{len(item.encrypted_content)} characters, sealed")
    return ShownItem(kind, "", "")


def shown_response(response: Mapping[str, Any]) -> ShownResponse:
    usage = response.get("usage") or {}
    details = usage.get("input_tokens_details") or {}
    error = response.get("error") or {}
    return ShownResponse(
        id=str(response["id"]),
        status=str(response.get("status")),
        model=str(response.get("model")),
        created_at=int(response.get("created_at") or 0),
        previous_response_id=response.get("previous_response_id"),
        input_tokens=usage.get("input_tokens"),
        cached_tokens=details.get("cached_tokens"),
        output_tokens=usage.get("output_tokens"),
        error=error.get("message"),
        output=tuple(shown_item(raw) for raw in response.get("output") or ()),
    )
