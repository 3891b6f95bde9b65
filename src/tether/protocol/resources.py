"""The bodies of the resource endpoints (spec §10.5 to §10.9, `/v1/models`, `/healthz`), and the
few fields other layers read from a stored Response. Built and read here, so that no other layer
knows their keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from tether.protocol.items import Item
from tether.protocol.response import Usage

Order = Literal["asc", "desc"]


def deleted(response_id: str) -> dict[str, Any]:
    """§10.5."""
    return {"id": response_id, "object": "response", "deleted": True}


def input_items_list(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """§10.7: one page of a response's input items."""
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


def page(
    items: list[dict[str, Any]], after: str | None, limit: int, order: Order
) -> tuple[list[dict[str, Any]], bool]:
    """§10.7 paging over wire items: the page after the item `after`, and whether more follow."""
    ordered = items if order == "asc" else items[::-1]
    if after is not None:
        positions = [i for i, item in enumerate(ordered) if item.get("id") == after]
        ordered = ordered[positions[0] + 1 :] if positions else []
    return ordered[:limit], len(ordered) > limit


def input_tokens(count: int) -> dict[str, Any]:
    """§10.8."""
    return {"object": "response.input_tokens", "input_tokens": count}


def compacted(compaction_id: str, created_at: int, output: Iterable[Item], usage: Usage) -> dict[str, Any]:
    """§10.9: the compacted window."""
    return {
        "id": compaction_id,
        "object": "response.compaction",
        "created_at": created_at,
        "output": [item.to_wire() for item in output],
        "usage": usage.to_wire(),
    }


@dataclass(frozen=True)
class ModelDetails:
    """What `GET /v1/models` says of a model beyond its name, where its backend knows it."""

    context_length: int | None = None  # tokens a conversation may hold, prompt and answer
    prompt_format: str | None = None  # the family of its chat template: chatml, gemma, llama3, ...
    tool_format: str | None = None  # how it writes tool calls: hermes, llama3_json, mistral, ...


def model_list(models: Iterable[tuple[str, ModelDetails]], created: int) -> dict[str, Any]:
    """`GET /v1/models`: every name the server answers to."""
    data = []
    for name, details in models:
        known = {key: value for key, value in asdict(details).items() if value is not None}
        data.append({"id": name, "object": "model", "created": created, "owned_by": "tether", **known})
    return {"object": "list", "data": data}


def health(models: Iterable[str]) -> dict[str, Any]:
    return {"status": "ok", "models": list(models)}


def readiness(*, store: str | None, backend: str | None) -> dict[str, Any]:
    """`/readyz`: what is wrong with each part (None: nothing)."""
    ready = store is None and backend is None
    return {
        "status": "ready" if ready else "not_ready",
        "checks": {"store": store or "ok", "backend": backend or "ok"},
    }


def status_of(response: Mapping[str, Any]) -> str:
    """The `status` of a Response object."""
    return str(response.get("status"))


def is_background(response: Mapping[str, Any]) -> bool:
    return bool(response.get("background"))
